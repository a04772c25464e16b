"""Packaging: what a user installs and what the examples write.

* The dependencies and extras of ``pyproject.toml`` give ranges, never one exact version: a user's environment with a
  neighbouring release of torch (say) must still resolve.  CI pins the version it tests in ``.ci/run``.
* The folders the README's examples write into (``run.save("out")``, ``lcnflow run --out runs/…``) are ignored by git.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def requirements() -> list[str]:
    project = PYPROJECT["project"]
    out = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        out.extend(extra)
    return out


@pytest.mark.parametrize("requirement", requirements())
def test_no_requirement_is_pinned_to_one_version(requirement):
    assert "==" not in requirement and "===" not in requirement, requirement
    assert re.search(r">=\s*\d", requirement), f"{requirement}: give a lower bound"


def test_torch_test_extra_admits_the_version_ci_pins():
    (torch_req,) = [r for r in PYPROJECT["project"]["optional-dependencies"]["test"] if r.startswith("torch")]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    pinned = re.search(r"pip install[^\n]*\btorch==([0-9.]+)", ci).group(1)
    lower = re.search(r">=\s*([0-9.]+)", torch_req).group(1)
    upper = re.search(r"<\s*([0-9.]+)", torch_req).group(1)

    def key(v: str) -> tuple[int, ...]:
        return tuple(int(p) for p in v.split("."))

    assert key(lower) <= key(pinned) < key(upper)
    # the pin is installed before the package and its extras, so the resolver keeps it
    assert ci.index("torch==") < ci.index('-e ".[test]"')


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="not a git checkout")
@pytest.mark.parametrize("path", ["out/result.json", "out/figures/loss.png", "runs/default/result.json"])
def test_example_output_folders_are_ignored(path):
    proc = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", path], capture_output=True)
    assert proc.returncode == 0, f"{path} is not ignored by .gitignore"
