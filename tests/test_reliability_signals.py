"""Ctrl-C (SIGINT) and SIGTERM end every command with one line and exit 130 / 143, never a traceback — at start-up
(imports), while the command runs, as a sweep starts its cluster — and an interrupted sweep resumes exactly.

Oracle: the exit status and stderr of real processes signalled at chosen moments (the whole process group, as a
terminal does), and the run ids in the results directory against the sweep's plan.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import typer

from lcnflow import _signals
from lcnflow.cli_support import guard
from sweep_helpers import tiny_sweep

SRC = str(Path(__file__).resolve().parents[1] / "src")

SWEEP_TOML = tiny_sweep('init.seed = {range = [0, 30]}')


def _signalled(args: list[str], delay: float, sig: int, cwd: Path) -> tuple[int, str]:
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("LCNFLOW_DEBUG", None)
    p = subprocess.Popen([sys.executable, *args], cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, start_new_session=True)
    time.sleep(delay)
    try:
        os.killpg(p.pid, sig)
    except ProcessLookupError:
        pass
    _, err = p.communicate(timeout=180)
    return p.returncode, err.decode()


def _check_one_line(rc: int, err: str, sig: int) -> None:
    if rc == 0:  # finished before the signal: nothing to check
        return
    assert rc in ({signal.SIGINT: 130, signal.SIGTERM: 143}[sig], -sig), (rc, err)  # a shell shows both as 128 + sig
    if rc == -sig and not err:  # killed before the interpreter ran any lcnflow code: nothing printed
        return
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    word = "interrupted" if sig == signal.SIGINT else "terminated"
    assert err.startswith(word), err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_run_ends_with_one_line_at_any_moment(tmp_path, sig):
    """0.05 s: Python is importing NumPy/SciPy/Numba; later: the command's own work."""
    args = ["-m", "lcnflow", "run", "--quiet", "--set", "architecture.input_size=40",
            "--set", "architecture.filter_sizes=[2,2,2,2,2,2]", "--set", "data.num_samples=300"]
    for delay in (0.05, 0.25, 0.6, 1.5):
        rc, err = _signalled(args, delay, sig, tmp_path)
        _check_one_line(rc, err, sig)


def test_interrupt_that_surfaces_as_another_exception_is_still_an_interrupt(capsys):
    """Numba's dispatcher turns a KeyboardInterrupt raised inside it into a SystemError."""

    @guard
    def command():
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as exc:
            raise SystemError("<numba dispatcher> returned a result with an exception set") from exc

    with pytest.raises(typer.Exit) as info:
        command()
    assert info.value.exit_code == 130
    assert capsys.readouterr().err.strip() == "interrupted"

    @guard
    def after_sigterm():
        _signals._SIGNAL_SEEN[0] = signal.SIGTERM  # what the handler records
        raise SystemError("error return without exception set")

    with pytest.raises(typer.Exit) as info:
        after_sigterm()
    assert info.value.exit_code == 143
    assert capsys.readouterr().err.strip() == "terminated"

    @guard
    def a_bug():
        raise RuntimeError("boom")

    with pytest.raises(typer.Exit) as info:  # no signal: an internal error, as before
        a_bug()
    assert info.value.exit_code == 1


def test_sweep_interrupted_as_it_starts_and_while_it_runs_resumes_exactly(tmp_path):
    import pyarrow.parquet as pq

    from lcnflow.sweep import expand, load_sweep

    sweep = tmp_path / "sweep.toml"
    sweep.write_text(textwrap.dedent(SWEEP_TOML), encoding="utf-8")
    args = ["-m", "lcnflow.sweep", "sweep", "sweep.toml", "--out", "out", "--workers", "1", "--quiet"]
    for delay, sig in ((1.0, signal.SIGINT), (2.5, signal.SIGINT), (3.0, signal.SIGTERM)):
        rc, err = _signalled(args, delay, sig, tmp_path)
        _check_one_line(rc, err, sig)  # (before the sweep's store exists the line says only that)
    env = dict(os.environ, PYTHONPATH=SRC)
    done = subprocess.run([sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    ids = [i for p in sorted((tmp_path / "out" / "runs").glob("part-*.parquet"))
           for i in pq.read_table(p, columns=["run_id"]).column("run_id").to_pylist()]
    plan = expand(load_sweep(sweep))
    assert sorted(ids) == sorted(r.run_id for r in plan.runs)  # every run exactly once


def test_interrupt_raised_where_python_cannot_propagate_it_arrives_in_ordinary_code():
    """A KeyboardInterrupt raised in ``__del__`` is unraisable: lcnflow's hook sends the signal again so that it is
    raised after the hook returns — one line and exit 130, not "Exception ignored in sys.unraisablehook"."""
    code = textwrap.dedent("""
        import sys, time
        from lcnflow import _signals

        class Bomb:
            def __del__(self):
                raise KeyboardInterrupt

        def load():
            def command(argv):
                _signals._SIGNAL_SEEN[0] = 2   # (what the SIGINT handler records)
                b = Bomb()
                del b                          # the interrupt surfaces in __del__
                time.sleep(10)                 # ordinary code: it must arrive here
                return 0
            return command

        sys.exit(_signals.run_guarded(load, []))
        """)
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    start = time.monotonic()
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert (res.returncode, res.stderr) == (130, "interrupted\n"), res.stderr
    assert time.monotonic() - start < 8
