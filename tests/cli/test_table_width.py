"""Terminal tables fit 80 columns: long task and layer names are abbreviated with a legend."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from mtldiag.cli.tables import abbreviate, layer_table, pair_table, task_table
from mtldiag.report.cells import TableData
from mtldiag.runs.profile import run_profile

from ..conftest import write_spec

LONG = ["semantic_segmentation_task", "monocular_depth_estimation_task", "surface_normals"]


MODEL = """
import torch
from torch import nn

TASKS = {tasks!r}


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder_backbone_stage_one_projection = nn.Linear(8, 16)
        self.encoder_backbone_stage_two_projection_layer = nn.Linear(16, 16)
        self.heads = nn.ModuleDict({{t: nn.Linear(16, 1) for t in TASKS}})

    def forward(self, x):
        h = torch.relu(self.encoder_backbone_stage_one_projection(x))
        h = torch.relu(self.encoder_backbone_stage_two_projection_layer(h))
        return {{t: head(h).squeeze(-1) for t, head in self.heads.items()}}


def build_model():
    return Net()


def build_loader():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 8, generator=g)
    ys = {{t: torch.randn(64, generator=g) for t in TASKS}}
    return [(x[i : i + 16], {{t: y[i : i + 16] for t, y in ys.items()}}) for i in range(0, 64, 16)]
"""


def long_named_run(tmp_path: Path) -> dict:
    (tmp_path / "net.py").write_text(MODEL.format(tasks=LONG))
    spec = {
        "name": "long",
        "device": "cpu",
        "model": "net.py:build_model",
        "data": "net.py:build_loader",
        "tasks": {t: {"loss": "mse"} for t in LONG},
        "optimizer": {"name": "sgd", "lr": 0.01},
    }
    path = write_spec(tmp_path, spec)
    return run_profile(path, out=tmp_path / "run", steps=4, every=1).summary


def render(table, width: int = 80) -> str:
    console = Console(width=width, record=True, color_system=None)
    console.print(table)
    return console.export_text()


def test_abbreviate_gives_unique_prefixed_names_and_a_legend():
    data = TableData("t", ["task", "x"], [[n, "1"] for n in LONG], ["l", "r"])
    short = abbreviate(data, (0,), budget=12)
    names = [r[0] for r in short.rows]
    assert len(set(names)) == 3 and all(len(n) <= 12 for n in names)
    assert names[2] == "surface_no…3"  # prefix, ellipsis, index
    assert f"{names[0]} = {LONG[0]}" in short.notes
    assert abbreviate(data, (0,), budget=40) is data  # nothing too long: unchanged


def test_tables_of_long_names_fit_80_columns_with_a_legend(tmp_path: Path):
    s = long_named_run(tmp_path)
    console = Console(width=80, record=True, color_system=None)
    for table in (task_table(s, console), pair_table(s, console), layer_table(s, 5, console)):
        text = render(table)
        assert max(len(line.rstrip()) for line in text.splitlines()) <= 80
        assert "= semantic_segmentation_task" in text  # the legend names the full task
    assert "= encoder_backbone_stage_two_projection_layer" in render(layer_table(s, 5, console))
    # Without a console (html/markdown take the plain cells) nothing is abbreviated.
    assert "semantic_segmentation_task" in render(task_table(s), width=200)
    assert "…" not in render(task_table(s), width=200)
