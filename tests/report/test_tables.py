"""Report tables from hand-made summaries: the numbers, the marks, and names kept as text."""

from __future__ import annotations

import copy

from rich.console import Console

from mtldiag.cli import tables as terminal
from mtldiag.report import comparison, tables

SUMMARY = {
    "kind": "profile",
    "tasks": ["a", "b", "c"],
    "layers": ["l1", "l2", "l3"],
    "runs": [
        {
            "method": "ew",
            "seed": 0,
            "status": "ok",
            "loss_mean": {"a": 50.0, "b": 2.0, "c": 0.5},
            "final_loss": {"a": 5.0, "b": 1.0, "c": 0.25},
            "grad_norm_mean": {"a": 8.0, "b": 2.0, "c": 1.0},
            "weight_mean": {"a": 1.0, "b": 1.0, "c": 1.0},
            "pairs": [
                {
                    "a": "a",
                    "b": "b",
                    "cosine_mean": -0.4,
                    "conflict_rate": 0.75,
                    "gms_mean": 0.5,
                    "conflict_cosine_mean": -0.55,
                    "layers": {
                        "l1": {"cosine_mean": 0.1, "conflict_rate": 0.2},
                        "l2": {"cosine_mean": -0.3, "conflict_rate": 0.5},
                        "l3": {"cosine_mean": -0.6, "conflict_rate": 0.9},
                    },
                },
                {
                    "a": "a",
                    "b": "c",
                    "cosine_mean": 0.2,
                    "conflict_rate": 0.1,
                    "gms_mean": 0.9,
                    "conflict_cosine_mean": -0.05,
                    "layers": {
                        "l1": {"cosine_mean": 0.2, "conflict_rate": 0.0},
                        "l2": {"cosine_mean": 0.0, "conflict_rate": 0.6},
                        "l3": {"cosine_mean": 0.3, "conflict_rate": 0.1},
                    },
                },
            ],
        }
    ],
}

COMPARISON = {
    "evaluation": "val_loss",
    "reference": "ew",
    "higher_is_better": {"a": False, "b": False, "c": True},
    "rows": [
        {
            "label": "pcgrad",
            "kind": "method",
            "rank": 1,
            "seeds": 3,
            "failed": 0,
            "metric": {
                "a": {"mean": 0.1234, "std": 0.01},
                "b": {"mean": 2.0, "std": 0.5},
                "c": {"mean": 0.9, "std": 0.0},
            },
            "delta_m": -3.2,
            "delta_m_std": 0.4,
            "conflict_rate": 0.41,
            "cosine_mean": -0.05,
            "step_time_ms": 3.1,
            "peak_memory_mb": 300.0,
            "dominated_by": [],
        },
        {
            "label": "ew",
            "kind": "method",
            "rank": 2,
            "seeds": 3,
            "failed": 0,
            "metric": {
                "a": {"mean": 0.2, "std": 0.02},
                "b": {"mean": 2.1, "std": 0.1},
                "c": {"mean": 0.8, "std": 0.05},
            },
            "delta_m": 0.0,
            "delta_m_std": 0.0,
            "conflict_rate": 0.5,
            "cosine_mean": -0.1,
            "step_time_ms": 2.0,
            "peak_memory_mb": 290.0,
            "dominated_by": ["sweep:0.25,0.25,0.5", "sweep:0.5,0.25,0.25", "sweep:0.2,0.4,0.4"],
        },
    ],
    "negative_transfer": [],
    "verdict": "pcgrad ranks first by Δm% (-3.2%).",
    "failed_runs": [{"label": "mgda", "seed": 1, "error": "NaN loss in task 'a' at step 12"}],
}


def render(renderable, width: int = 200) -> str:
    console = Console(width=width, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_task_table_ratios_are_to_the_smallest_task():
    data = tables.task_data(SUMMARY)
    rows = {r[0]: r for r in data.rows}
    assert rows["a"][1:] == ["50", "100.0×", "5", "8", "8.0×"]  # 50 / 0.5, 8 / 1
    assert rows["b"][2] == "4.0×" and rows["b"][5] == "2.0×"
    assert rows["c"][2] == "1.0×" and rows["c"][5] == "1.0×"
    assert "mean weight" not in data.headers  # all weights 1: nothing to say


def test_pair_table_numbers_and_marks():
    data = tables.pair_data(SUMMARY)
    assert data.rows[0] == ["a", "b", "-0.40", "75%", "-0.55", "0.5"]
    assert data.rows[1][2:4] == ["+0.20", "10%"]
    assert data.marked == {0}  # a directional conflict (the diagnosis' rule)


def test_sign_flips_near_zero_cosine_are_not_marked():
    s = copy.deepcopy(SUMMARY)
    s["runs"][0]["pairs"][1].update(cosine_mean=0.01, conflict_rate=0.5, conflict_cosine_mean=-0.03)
    assert tables.pair_data(s).marked == {0}
    s["runs"][0]["pairs"][1]["conflict_cosine_mean"] = -0.2
    assert tables.pair_data(s).marked == {0, 1}


def test_layer_table_ranks_by_worst_pair():
    data = tables.layer_data(SUMMARY, top=2)
    assert [r[0] for r in data.rows] == ["l3", "l2"]  # 90% (a-b), then 60% (a-c)
    assert data.rows[0][1:] == ["3/3", "50%", "a–b", "90%", "-0.60"]  # mean of 90% and 10%
    assert data.title.endswith("(top 2 of 3)")


def test_rich_tables_show_the_numbers():
    text = render(terminal.task_table(SUMMARY)) + render(terminal.pair_table(SUMMARY))
    text += render(terminal.layer_table(SUMMARY, top=5))
    assert "100.0×" in text and "-0.55" in text and "l3" in text


def test_names_are_never_read_as_rich_markup():
    s = copy.deepcopy(SUMMARY)
    s["tasks"] = ["[bold]x[/bold]", "b", "c"]
    s["runs"][0]["loss_mean"]["[bold]x[/bold]"] = s["runs"][0]["loss_mean"].pop("a")
    assert "[bold]x[/bold]" in render(terminal.task_table(s))


def test_comparison_table_full_and_compact():
    s = {**copy.deepcopy(SUMMARY), "kind": "compare", "comparison": COMPARISON}
    full = comparison.comparison_data(s, level=0)
    assert full.headers[:5] == ["#", "method", "a ↓", "b ↓", "c ↑"]
    assert full.rows[0][2:6] == [
        "0.123 ± 0.01",
        "2 ± 0.5",
        "0.9 ± 0",
        "-3.20 ± 0.4",
    ]  # 3 significant digits
    assert full.rows[1][1] == "ew †" and full.marked == {1}
    assert full.rows[1][-1] == "sweep:0.25,0.25,0.5, sweep:0.5,0.25,0.25 +1"
    notes = " ".join(full.notes)
    assert "equal weighting (ew)" in notes and "val_loss" in notes
    assert "mgda seed 1: NaN loss in task 'a' at step 12" in notes
    text = render(terminal.comparison_table_rich(s))
    assert "pcgrad" in text and "-3.20 ± 0.4" in text
    assert "† ew is dominated by sweep:0.25,0.25,0.5" in text  # compact: marks in the notes
    assert "Verdict: pcgrad ranks first" in text


def test_comparison_table_fits_a_narrow_terminal():
    s = {**copy.deepcopy(SUMMARY), "kind": "compare", "comparison": COMPARISON}
    console = Console(width=60, record=True, color_system=None)
    console.print(terminal.comparison_table_rich(s, console))
    lines = console.export_text().splitlines()
    assert max(len(x.rstrip()) for x in lines) <= 60
    assert any("pcgrad" in x for x in lines) and any("0.123" in x for x in lines)


def test_single_task_row_is_the_reference():
    comp = {
        **COMPARISON,
        "reference": "single_task",
        "single_task": {t: {"mean": 1.0, "std": 0.0} for t in "abc"},
    }
    data = comparison.comparison_data({**SUMMARY, "comparison": comp})
    assert data.rows[-1][1] == "single-task" and data.rows[-1][5] == "ref."
