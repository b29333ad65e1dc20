"""write_report on real run directories: every file, a self-contained page, escaped names."""

from __future__ import annotations

import base64
import csv
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

from mtldiag.errors import MtldiagError
from mtldiag.report import write_report
from mtldiag.report.markdown import md_escape

from ..conftest import SYNTHETIC, write_spec

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class PageParser(HTMLParser):
    """Collects what a browser would fetch or run."""

    def __init__(self) -> None:
        super().__init__()
        self.imgs: list[str] = []
        self.refs: list[tuple[str, str, str]] = []
        self.scripts = 0
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        d = dict(attrs)
        if tag == "img":
            self.imgs.append(d.get("src") or "")
        if tag == "script":
            self.scripts += 1
        for key in ("src", "href", "data", "action", "srcset", "poster"):
            if key in d:
                self.refs.append((tag, key, d[key] or ""))

    def handle_data(self, data):
        self.text.append(data)


def parse(path: Path) -> PageParser:
    p = PageParser()
    p.feed(path.read_text(encoding="utf-8"))
    p.close()
    return p


def assert_self_contained(html_path: Path) -> PageParser:
    """No script, no URL, nothing referenced but the embedded PNGs (which must decode)."""
    page = parse(html_path)
    raw = html_path.read_text(encoding="utf-8")
    assert "http://" not in raw and "https://" not in raw and "url(" not in raw
    assert page.scripts == 0
    for tag, key, value in page.refs:
        assert tag == "img" and key == "src" and value.startswith("data:image/png;base64,"), (
            tag,
            key,
            value[:60],
        )
    for src in page.imgs:
        assert base64.b64decode(src.split(",", 1)[1], validate=True).startswith(PNG_MAGIC)
    return page


def test_profile_writes_every_report_file(profile_run: Path):
    # run_profile wrote the report itself; write it again and check both times' files.
    for _ in range(2):
        assert (profile_run / "report.html").is_file() and (profile_run / "report.md").is_file()
        names = sorted(p.name for p in (profile_run / "plots").glob("*.png"))
        # one run: no comparison plots; one shared layer: no heatmap; ew: no weight changes
        assert names == ["conflict.png", "grad_norm_ratio.png", "loss_curves.png", "step_time.png"]
        paths = write_report(profile_run)
    assert paths.warnings == []
    assert sorted(p.name for p in paths.plots) == names
    for p in paths.plots:
        assert p.read_bytes().startswith(PNG_MAGIC)


def test_html_parses_embeds_every_plot_and_fetches_nothing(profile_run: Path):
    page = assert_self_contained(profile_run / "report.html")
    assert len(page.imgs) == len(list((profile_run / "plots").glob("*.png")))
    text = " ".join(page.text)
    summary = json.loads((profile_run / "summary.json").read_text())
    assert summary["name"] in text and "Diagnosis" in text
    assert "conflict" in text and "Task pairs" in text


def test_markdown_links_the_plots_and_holds_the_tables(profile_run: Path):
    md = (profile_run / "report.md").read_text()
    for png in (profile_run / "plots").glob("*.png"):
        assert f"](plots/{png.name})" in md
    assert "| task | mean loss | loss ratio |" in md
    assert "## Diagnosis" in md


def test_md_escape_keeps_tables_whole():
    assert md_escape("a|b") == "a\\|b"
    assert md_escape("<script>") == "\\<script\\>"


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run whose task, spec and layer names are HTML and Markdown syntax."""
    from mtldiag.runs.profile import run_profile

    folder = tmp_path_factory.mktemp("hostile")
    names = {"<script>": "a", "x|y": "b", "&amp": "c"}
    spec = {
        **SYNTHETIC,
        "name": "<b>bold</b>",
        "tasks": {n: {"output": o, "target": o, "loss": "mse"} for n, o in names.items()},
    }
    out = folder / "run"
    run_profile(write_spec(folder, spec), out=out, steps=6)
    return out


def test_user_names_are_escaped_in_html(hostile_run: Path):
    raw = (hostile_run / "report.html").read_text()
    assert "<script>" not in raw and "<b>bold</b>" not in raw
    assert "&lt;script&gt;" in raw and "&amp;amp" in raw
    page = assert_self_contained(hostile_run / "report.html")
    text = "".join(page.text)
    assert "<script>" in text and "<b>bold</b>" in text  # shown to the reader as text


def test_user_names_are_escaped_in_markdown(hostile_run: Path):
    md = (hostile_run / "report.md").read_text().splitlines()
    assert any("\\<script\\>" in line for line in md)
    header = next(line for line in md if line.startswith("| task | mean loss"))
    row = next(line for line in md if line.startswith("| x\\|y |"))
    cells = re.compile(r"(?<!\\)\|")  # a pipe not escaped by a backslash
    assert len(cells.findall(row)) == len(cells.findall(header)) == 7


def test_compare_summary_with_comparison_renders(profile_run: Path, tmp_path: Path):
    """Two profile runs merged into one compare directory with a hand-made comparison."""
    from mtldiag.rundir.load import read_steps

    run = tmp_path / "compare"
    shutil.copytree(profile_run, run)
    # A second method (a loss weighting): the ew rows relabelled, with weights that change.
    steps = list(csv.reader((profile_run / "steps.csv").read_text().splitlines()))
    col = steps[0].index("weight/a")
    with open(run / "steps.csv", "a", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        for row in steps[1:]:
            out.writerow(["uncertainty", *row[1:col], str(1 + int(row[2]) / 10), *row[col + 1 :]])
    pairs = (profile_run / "pairs.csv").read_text().split("\n", 1)[1]
    with open(run / "pairs.csv", "a", encoding="utf-8") as f:
        f.write(pairs.replace("ew,", "uncertainty,"))
    b = json.loads((profile_run / "summary.json").read_text())
    b["runs"][0]["method"] = "uncertainty"
    b["runs"][0]["final_loss"] = {t: v * 2 for t, v in b["runs"][0]["final_loss"].items()}
    a = json.loads((profile_run / "summary.json").read_text())
    tasks = a["tasks"]
    for s in (a, b):
        s["runs"][0]["metrics"] = dict(s["runs"][0]["final_loss"])
    rows = [
        {
            "label": s["runs"][0]["method"],
            "kind": "method",
            "rank": k + 1,
            "seeds": 1,
            "failed": 0,
            "metric": {t: {"mean": s["runs"][0]["metrics"][t], "std": 0.0} for t in tasks},
            "delta_m": [0.0, -12.5][k],
            "delta_m_std": 0.0,
            "conflict_rate": 0.5,
            "cosine_mean": -0.1,
            "step_time_ms": 1.0,
            "peak_memory_mb": 100.0,
            "dominated_by": ["sweep:0.5,0.25,0.25"] if k else [],
        }
        for k, s in enumerate((a, b))
    ]
    summary = {
        **a,
        "kind": "compare",
        "runs": a["runs"] + b["runs"],
        "evaluation": "train_loss_tail",
        "comparison": {
            "evaluation": "train_loss_tail",
            "reference": "ew",
            "higher_is_better": dict.fromkeys(tasks, False),
            "rows": rows,
            "negative_transfer": [],
            "failed_runs": [],
            "verdict": "uncertainty <wins> by Δm% (-12.5%).",
        },
    }
    (run / "summary.json").write_text(json.dumps(summary))
    assert set(read_steps(run / "steps.csv")["method"]) == {"ew", "uncertainty"}
    paths = write_report(run)
    assert paths.warnings == []
    names = {p.name for p in paths.plots}
    assert {"final_metrics.png", "pareto.png", "weights.png", "loss_curves.png"} <= names
    assert paths.plots[0].name == "forest.png"  # the decision plot comes first
    raw = (run / "report.html").read_text()
    assert "uncertainty &lt;wins&gt; by Δm%" in raw and "Comparison, best first" in raw
    assert "uncertainty †" in raw  # dominated by a sweep point
    assert_self_contained(run / "report.html")
    md = (run / "report.md").read_text()
    assert "| # | method | a ↓ | b ↓ | c ↓ | Δm% |" in md


def test_only_weighting_methods_have_loss_weight_trajectories():
    # PCGrad's "weights" (its coefficients on the task gradients) are not loss weights.
    from mtldiag.report.plots.training import _weighting

    assert _weighting("uncertainty") and _weighting("gradnorm:alpha=1.5")
    assert not _weighting("pcgrad") and not _weighting("cagrad:c=0.4")
    assert not _weighting("no_such_method")


def test_write_report_without_summary_points_to_mtldiag_report(profile_copy: Path):
    (profile_copy / "summary.json").unlink()
    with pytest.raises(MtldiagError, match="no readable summary.json") as info:
        write_report(profile_copy)
    assert "mtldiag report" in (info.value.hint or "")
