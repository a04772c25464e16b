"""The run record's schema (:mod:`lcnflow.record`): one writer, one reader, and the files earlier versions wrote.

Oracles: the objects a record summarizes, in the JSON form the record was composed of before the schema existed
(``jsonable`` of ``FlowResult.to_dict()``, ``TheoremCheck.to_dict()``, ``DataCondition.to_dict()``, …, key order
included); the JSON text ``run.save`` wrote (byte for byte); and run records written by earlier lcnflow versions
(``tests/data/old_records``: ``first-format-bdec664.json`` from the commit that introduced ``lcnflow-run/1``,
``before-channels-1fe6348.json`` from one before ``architecture.channels`` and ``degenerate_hessian`` existed; both
are the tiny 1D planted run below, written by ``ExperimentRun.to_dict`` of those versions).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from lcnflow.dynamics.result import SCALAR_FIELDS
from lcnflow.experiments import config_from_dict, execute
from lcnflow.experiments.runner import VERDICT_SCALARS
from lcnflow.flow import theorem_hypotheses
from lcnflow.record import (
    FORMAT,
    CriticalPointSummary,
    DataConditionSummary,
    LayerSummary,
    PlateauSummary,
    ReportError,
    ResultSummary,
    RunRecord,
    Verdict,
    jsonable,
    read_record,
)
from lcnflow.report import build_report, load_run
from lcnflow.report.html import _page

TINY_1D = {"data.source": "planted", "data.num_samples": 20, "architecture.input_size": 14,
           "architecture.filter_sizes": [3, 2, 2], "init.scale": 0.5}
OLD_RECORDS = Path(__file__).parent / "data" / "old_records"

#: Every field added after the format's first version, with the value an older record (which lacks it) reads as.
ADDED_LATER = {
    "architecture.channels": (1, 1, 1, 1),  # one channel per signal d_0 … d_3
    "architecture.symmetry_dim": None,
    **dict.fromkeys(["verdict.stop_reason", "verdict.stable_set", "verdict.limit_verified",
                     "verdict.unconstrained_optimum_reached", "verdict.on_function_space", "verdict.gap_to_best",
                     "verdict.nearest_critical_point", "verdict.best_value", "verdict.best_exact",
                     "verdict.best_statement"]),
    "verdict.itinerary": (),
    **dict.fromkeys(["result.integrator", "result.kind", "result.stop_reason", "result.stable_set", "result.origin",
                     "result.spurious", "result.unconstrained_optimum_reached", "result.on_function_space",
                     "result.gap_to_best", "result.degenerate_hessian", "result.num_candidates",
                     "result.num_plateaus", "result.first_escape_time", "result.nearest_distance",
                     "result.limit_verified", "result.nearest_critical_point", "result.verification"]),
    "result.itinerary": (),
    **dict.fromkeys([f"result.critical_point.{name}" for name in (
        "unconstrained_optimum_reached", "global_on_m", "gap_to_best", "best_value", "best_exact", "best_statement",
        "value_tolerance", "index", "undecided", "degenerate_hessian", "newton_distance")]),
    "timings.compile_seconds": None,
    "timings.compilations": None,
    "timings.compiled_in_background": False,
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Saved runs: one that crosses a plateau before its classified limit (an itinerary), one stopped early (an
    uncertified endpoint with its nearest critical point), one with channels."""
    out = {}
    for name, overrides in {"plateau": {**TINY_1D, "init.scale": 1e-3},
                            "stopped": {**TINY_1D, "flow.max_steps": 3},
                            "channels": {**TINY_1D, "architecture.channels": [1, 2, 1, 1]}}.items():
        run = execute(config_from_dict({"name": name}, overrides))
        directory = tmp_path_factory.mktemp(name)
        run.save(directory, report=False)
        out[name] = (run, directory)
    return out


def same(a, b) -> bool:
    """Equal as JSON text: the same keys in the same order, the same values and value types (1 is not 1.0)."""
    return json.dumps(a, ensure_ascii=False) == json.dumps(b, ensure_ascii=False)


def get(d: dict, dotted: str):
    for part in dotted.split("."):
        d = d[int(part)] if isinstance(d, list) else d[part]
    return d


def delete(d: dict, dotted: str) -> None:
    *parents, last = dotted.split(".")
    node = get(d, ".".join(parents)) if parents else d
    if node is not None:
        node.pop(last, None)


# ---------------------------------------------------------------------------------------------------- round trip
@pytest.mark.parametrize("name", ["plateau", "stopped", "channels"])
def test_a_saved_record_reads_back_and_writes_the_same_bytes(runs, name):
    _, directory = runs[name]
    path = directory / "result.json"
    text = path.read_text(encoding="utf-8")
    d = json.loads(text)
    record = RunRecord.from_json_dict(d, path)
    assert record.to_json_dict() == d and same(record.to_json_dict(), d)
    assert json.dumps(record.to_json_dict(), indent=2, ensure_ascii=False) + "\n" == text
    assert read_record(path) == record
    assert RunRecord.from_json_dict(record.to_json_dict(), path) == record
    assert isinstance(record.architecture.layers[0], LayerSummary)
    assert isinstance(record.data.condition, DataConditionSummary)
    if name == "plateau":
        assert record.result.itinerary and all(isinstance(p, PlateauSummary) for p in record.result.itinerary)
        assert isinstance(record.result.critical_point, CriticalPointSummary)
    if name == "stopped":
        assert record.result.critical_point is None and not record.verdict.converged
        assert isinstance(record.result.nearest_critical_point, CriticalPointSummary)
    if name == "channels":
        assert record.architecture.channels == (1, 2, 1, 1) and record.architecture.multichannel


@pytest.mark.parametrize("name", ["plateau", "stopped", "channels"])
def test_the_record_holds_what_it_summarizes_as_before_the_schema(runs, name):
    """The JSON keeps the keys, their order and their value types of the records composed by hand before."""
    run, directory = runs[name]
    d = json.loads((directory / "result.json").read_text(encoding="utf-8"))
    exp, res = run.experiment, run.result
    assert list(d) == ["format", "lcnflow_version", "created", "name", "description", "config", "architecture",
                       "loss", "data", "hypotheses", "solver", "verdict", "function_space_optimum", "result", "notes",
                       "timings"]
    assert d["format"] == FORMAT == "lcnflow-run/1" and d["name"] == name
    assert same(d["config"], jsonable(exp.config.to_dict()))
    assert same(d["loss"], jsonable({"name": exp.loss.name, "params": dict(exp.loss.params),
                                     "description": exp.loss.description, **exp.loss.properties()}))
    assert same(d["data"]["condition"], jsonable(exp.risk.data_condition.to_dict()))
    assert same(d["hypotheses"], jsonable(theorem_hypotheses(exp.risk).to_dict()))
    assert same(d["solver"], jsonable({"method": exp.config.flow.method, "integrator": res.integrator,
                                       "options": res.options}))
    assert same(d["function_space_optimum"], jsonable(run.optimum.to_dict()))
    assert same(d["result"], jsonable(res.to_dict()))
    assert same({k: d["verdict"][k] for k in VERDICT_SCALARS}, jsonable({k: res.scalars()[k] for k in VERDICT_SCALARS}))
    assert d["verdict"] == run.verdict
    assert same(d["notes"], list(run.notes)) and same(d["timings"], jsonable(run.timings))
    arch = exp.architecture
    assert d["architecture"]["channels"] == list(arch.channels) and d["architecture"]["num_params"] == arch.num_params
    assert d["architecture"]["layers"][-1]["output_size"] == arch.output_size


def test_result_and_verdict_fields_follow_the_results_flat_fields(runs):
    names = [f.name for f in dataclasses.fields(ResultSummary)]
    assert names[:len(SCALAR_FIELDS)] == list(SCALAR_FIELDS)
    assert names == list(runs["plateau"][0].result.to_dict())
    assert [f.name for f in dataclasses.fields(Verdict)][:len(VERDICT_SCALARS)] == list(VERDICT_SCALARS)
    res = runs["plateau"][0].result
    assert [f.name for f in dataclasses.fields(CriticalPointSummary)] == list(res.critical_point.to_dict())
    assert [f.name for f in dataclasses.fields(PlateauSummary)] == list(res.itinerary[0].to_dict())


# ---------------------------------------------------------------------------------------------------- damaged
@pytest.mark.parametrize(("dotted", "value", "words"), [
    ("architecture.num_params", KeyError, "field architecture.num_params is missing; the file is damaged or not "
                                          "written by `lcnflow run` (rerun the experiment with --out)"),
    ("verdict", KeyError, "field verdict is missing"),
    ("result.critical_point.kind", 3, "field result.critical_point.kind must be str, got int '3'; the file is "
                                      "damaged"),
    ("architecture.layers.1.stride", "2", "field architecture.layers[1].stride must be int or list, got str '2'"),
    ("architecture.filter_sizes.0", True, "field architecture.filter_sizes[0] must be int or list, got bool 'True'"),
    ("result.itinerary.0.kind", KeyError, "field result.itinerary[0].kind is missing"),
    ("data.condition.condition_number", "inf", "field data.condition.condition_number must be number or null"),
    ("result.t_final", None, "field result.t_final must be number, got NoneType 'None'"),
    ("verdict.itinerary", "plateau 1", "field verdict.itinerary must be list, got str"),
    ("timings", [], "field timings must be dict, got list '[]'"),
    ("result.critical_point", [1], "field result.critical_point must be dict or null"),
    ("data.input_shape.0", 1.5, "field data.input_shape[0] must be int, got float '1.5'"),
    ("notes", "none", "field notes must be list, got str 'none'"),
])
def test_a_missing_or_mistyped_field_is_named(runs, tmp_path, dotted, value, words):
    d = json.loads((runs["plateau"][1] / "result.json").read_text(encoding="utf-8"))
    *parents, last = dotted.split(".")
    node = get(d, ".".join(parents)) if parents else d
    if value is KeyError:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    path = tmp_path / "result.json"
    with pytest.raises(ReportError) as err:
        RunRecord.from_json_dict(d, path)
    assert str(err.value).startswith(f"report: {path}: ") and words in str(err.value), str(err.value)
    path.write_text(json.dumps(d), encoding="utf-8")
    with pytest.raises(ReportError, match=rf"^report: {path}: field "):
        read_record(path)


def test_what_is_not_a_run_record_is_refused(tmp_path):
    refused = r"^report: x\.json is not an lcnflow run record \(format lcnflow-run/1\)$"
    for d in ({"format": "lcnflow-run/2"}, {"accuracy": 0.93}, [1, 2], None):
        with pytest.raises(ReportError, match=refused):
            RunRecord.from_json_dict(d, "x.json")
    path = tmp_path / "result.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(ReportError, match=r"^report: cannot read .*result\.json"):
        read_record(path)


# ---------------------------------------------------------------------------------------------------- old files
def holds(written, raw) -> bool:
    """Whether ``written`` holds ``raw``: its keys (recursively) with the same values and types (the first format
    ordered the result's keys otherwise: the order is today's)."""
    if isinstance(raw, dict):
        return isinstance(written, dict) and all(k in written and holds(written[k], v) for k, v in raw.items())
    if isinstance(raw, list):
        return isinstance(written, list) and len(written) == len(raw) and all(map(holds, written, raw))
    return type(written) is type(raw) and written == raw


def optional_fields(cls: type, where: str = "") -> dict[str, typing.Any]:
    """Dotted field → the default it is read with when missing, over the schema (a part read only when present,
    like ``result.critical_point``, is followed into)."""
    out = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        dotted = f"{where}.{f.name}" if where else f.name
        if "missing" in f.metadata:
            out[dotted] = f.metadata["missing"]
        elif "missing_from" in f.metadata:
            out[dotted] = "computed"
        inner = [t for t in (typing.get_args(hints[f.name]) or (hints[f.name],)) if dataclasses.is_dataclass(t)]
        if inner and "missing" not in f.metadata:
            out.update(optional_fields(inner[0], dotted))
    return out


def test_the_fields_added_later_are_the_documented_ones():
    found = optional_fields(RunRecord)
    assert set(found) == set(ADDED_LATER)
    assert found["architecture.channels"] == "computed"
    assert all(found[k] == v for k, v in ADDED_LATER.items() if k != "architecture.channels")


def test_an_old_style_record_reads_with_the_documented_defaults(runs, tmp_path):
    """A record without the fields added after the format's first version reads, each field at its default, and
    the report lays it out."""
    _, directory = runs["plateau"]
    d = json.loads((directory / "result.json").read_text(encoding="utf-8"))
    for dotted in sorted(ADDED_LATER, key=lambda k: -k.count(".")):  # the critical point's fields first
        delete(d, dotted)
    assert "channels" not in d["architecture"] and "degenerate_hessian" not in d["result"]["critical_point"]
    record = RunRecord.from_json_dict(d, "old.json")
    for dotted, default in ADDED_LATER.items():
        value = record
        for part in dotted.split("."):
            value = getattr(value, part)
        assert value == default, dotted
    assert not record.architecture.multichannel
    # the record itself is unchanged (the report of the same run, from the old-style file)
    old = tmp_path / "old"
    shutil.copytree(directory, old)
    (old / "result.json").write_text(json.dumps(d, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    assert load_run(old).record == record
    page = build_report(old, figures=("convergence",)).read_text(encoding="utf-8")
    assert "no plateau" in page and record.verdict.headline in page.replace("&#x27;", "'")


@pytest.mark.parametrize("name", ["first-format-bdec664.json", "before-channels-1fe6348.json"])
def test_records_written_by_earlier_versions_read(name):
    path = OLD_RECORDS / name
    raw = json.loads(path.read_text(encoding="utf-8"))
    record = read_record(path)
    assert record.name == "tiny-1d" and record.architecture.channels == (1, 1, 1, 1)
    assert record.result.critical_point is not None and record.result.critical_point.degenerate_hessian is None
    assert record.result.degenerate_hessian is None and record.timings.compiled_in_background is False
    assert record.verdict.headline == raw["verdict"]["headline"]
    if name.startswith("first-format"):  # the format's first version: none of the later fields
        assert "iterations" in raw["function_space_optimum"]  # a key since dropped: ignored
        assert record.result.integrator is None and record.result.itinerary == () and record.verdict.itinerary == ()
        assert record.verdict.stop_reason is None and record.result.critical_point.index is None
        assert record.timings.compile_seconds is None
    else:
        assert record.result.integrator == raw["result"]["integrator"] and record.timings.compilations is not None
    # what it does hold is written back unchanged (the defaults fill in, the dropped key goes)
    raw["function_space_optimum"].pop("iterations", None)
    assert holds(record.to_json_dict(), raw)
    page = _page(record, [], "")  # the report lays it out
    assert "Verdict: certified" in page and "dimension / depth" in page


# ---------------------------------------------------------------------------------------------------- writer
def test_compiled_in_background_is_written_only_when_true(runs):
    record = read_record(runs["plateau"][1] / "result.json")
    assert "compiled_in_background" not in record.to_json_dict()["timings"]
    background = dataclasses.replace(record, timings=dataclasses.replace(record.timings, compiled_in_background=True))
    timings = background.to_json_dict()["timings"]
    assert list(timings)[-1] == "compiled_in_background" and timings["compiled_in_background"] is True
    assert RunRecord.from_json_dict(background.to_json_dict()) == background


def test_the_record_is_what_the_run_writes(runs, tmp_path):
    run, _ = runs["stopped"]
    record = run.record()
    assert isinstance(record, RunRecord) and record.result.loss == run.result.loss
    assert same({**record.to_json_dict(), "created": None}, {**run.to_dict(), "created": None})
    run.save(tmp_path, record, report=False)
    assert read_record(tmp_path / "result.json") == record


def test_the_schema_loads_no_other_lcnflow_module_nor_matplotlib_nor_numba():
    code = ("import sys, lcnflow.record; "
            "loaded = sorted(m for m in sys.modules if m.startswith('lcnflow.') and m != 'lcnflow.record'); "
            "assert not loaded, loaded; assert 'matplotlib' not in sys.modules and 'numba' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
