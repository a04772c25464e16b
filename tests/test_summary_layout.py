"""``summary.html`` reads well: tables that fit, categories in reading order, the telling cells' limits first.

Oracles: hand-built final filters whose distinct limits are known by construction, the natural order of numbers and
of filter-size lists written out by hand, and the HTML text of a summarized small sweep.
"""

from __future__ import annotations

import re
import textwrap

import numpy as np

from lcnflow.sweep import execute as sweep_execute
from lcnflow.sweep.execute import _row, run_batch
from lcnflow.sweep.grid import expand, load_sweep
from lcnflow.sweep.store import SweepStore
from lcnflow.sweep.summary import MAX_LIMIT_CELLS, category_order, header, limit_cells, summarize


def test_categories_in_natural_order_not_as_strings():
    assert category_order(["[3,3]", "[10,3]", "[2,2,2,2]", "[3,3,3]"]) == ["[3,3]", "[10,3]", "[3,3,3]", "[2,2,2,2]"]
    assert category_order([1.0, 0.001, 0.1, 1.0]) == [0.001, 0.1, 1.0]
    assert category_order(["[[3,3],[2,2]]", "[[2,2],[2,2]]"]) == ["[[2,2],[2,2]]", "[[3,3],[2,2]]"]
    # lists as read from the results (JSON text above is how sweeps before list columns stored them)
    assert category_order([[3, 3], [10, 3], [2, 2, 2, 2], [3, 3], [3, 3, 3]]) == [[3, 3], [10, 3], [3, 3, 3],
                                                                                   [2, 2, 2, 2]]
    assert category_order([[[3, 3], [2, 2]], [[2, 2], [2, 2]]]) == [[[2, 2], [2, 2]], [[3, 3], [2, 2]]]
    # words keep the grid's order (the first cell each appears in), not the alphabet
    assert category_order(["student_t", "gaussian", "laplace", "gaussian"], [2, 0, 1, 0]) == \
        ["gaussian", "laplace", "student_t"]


def test_limit_cells_puts_the_telling_cells_first(rng):
    # cell c has c + 1 distinct limits unless c ≥ 5 (one limit); cells 5 and 6: one limit, but 6 is not global
    cells, filters, labels = [], [], []
    for c in range(8):
        distinct = c + 1 if c < 5 else 1
        reps = [rng.standard_normal(4) * 3 for _ in range(distinct)]
        for j in range(10):
            cells.append(c)
            filters.append(reps[j % distinct] + 1e-9 * rng.standard_normal(4))
            labels.append("spurious" if (c == 6 or (c < 5 and j % distinct)) else "global_minimum")
    panels, n = limit_cells(cells, filters, labels)
    assert n == 8 and len(panels) == MAX_LIMIT_CELLS
    assert [p[0] for p in panels] == [4, 3, 2, 1, 6, 0]
    assert [len(p[2]) for p in panels] == [5, 4, 3, 2, 1, 1]
    assert panels[4][3] == 1.0 and panels[5][3] == 0.0
    assert all(p[1] == 10 for p in panels)


SWEEP = """\
    name = "layout"
    [architecture]
    input_size = 12
    [data]
    source = "planted"
    num_samples = 30
    [grid]
    "architecture.filter_sizes" = [[3, 3], [2, 2]]
    init.scale = [1.0, 0.01]
    init.seed = {range = [0, 2]}
"""


def test_summary_html_splits_the_table_and_keeps_it_scrollable(tmp_path):
    path = tmp_path / "sweep.toml"
    path.write_text(textwrap.dedent(SWEEP), encoding="utf-8")
    plan = expand(load_sweep(path))
    sweep_execute._PROBLEMS.clear()
    results = run_batch(plan.spec.base, [(r.run_id, r.overrides, r.problem) for r in plan.runs])
    out = tmp_path / "out"
    with SweepStore(out, plan) as store:
        store.write([_row(plan, r, res) for r, res in zip(plan.runs, results, strict=True)])
    summary = summarize(out)
    page = summary.html_path.read_text(encoding="utf-8")
    tables = re.findall(r'<div class="scroll"><table>(.*?)</table></div>', page, re.S)
    assert len(tables) >= 2  # outcomes, then losses, gaps and times; each split further when wider than a page
    heads = [[h.replace("<wbr>", "") for h in re.findall(r"<th(?: [^>]*)?>(.*?)</th>", t)] for t in tables]
    # every column of the summary is in a table; the cell's own columns in both
    shown = set().union(*heads)
    assert {header(c) for c in summary.table.column_names} <= shown
    for h in heads:
        assert h[:3] == ["cell", "architecture.filter_sizes", "init.scale"]
    assert all(len(h) <= 14 for h in heads), [len(h) for h in heads]
    assert "overflow-x: auto" in page
    # numbers in the table rows are as in the table (first row, runs column)
    assert summary.table.column("runs").to_pylist() == [2, 2, 2, 2]
    assert np.isclose(sum(summary.table.column("pct_converged").to_pylist()) / 4, 100.0)
