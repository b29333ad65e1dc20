"""The redesign changed no number: every sample spec's records equal those made before it.

The fixtures under ``tests/fixtures/golden/`` were written by this module's ``records`` at
commit aba6bb9 (the last commit before the one-step-engine layout): a short compare of one
weighting method, GradNorm (grad norms), PCGrad, MGDA (Gramian) and GradDrop (Jacobian), with
instrumented and plain steps. Timing and memory columns differ run to run and are dropped;
every other value must be byte-identical. Regenerate only for a change that is meant to move
the numbers: ``python tests/test_golden_records.py`` (and say why in the commit).
"""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

import pytest

from mtldiag import run_compare

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parents[1] / "fixtures" / "golden"
SPECS = {
    "synthetic": "sample_configs/synthetic.yaml",
    "mlp": "sample_configs/mlp.yaml",
    "digits": "sample_configs/digits.yaml",
    "custom": "sample_configs/custom/spec.yaml",
}
VOLATILE = {"time_ms", "peak_memory_mb"}
# Columns added after the fixtures were made (each is tested where it was added: ``lr`` in
# tests/runs/test_training_options.py); every column the fixtures have must stay identical.
ADDED = {"lr"}


def records(name: str, out: Path) -> dict[str, str]:
    """steps.csv and pairs.csv of the fixed compare of sample spec ``name`` (volatile out)."""
    res = run_compare(
        ROOT / SPECS[name],
        methods="ew,gradnorm,pcgrad,mgda,graddrop",
        seeds=[0],
        steps=8,
        every=3,
        out=out,
        device="cpu",
    )
    texts = {}
    for f in ("steps.csv", "pairs.csv"):
        rows = list(csv.reader((res.run_dir / f).read_text().splitlines()))
        keep = [i for i, h in enumerate(rows[0]) if h not in VOLATILE | ADDED]
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        for r in rows:
            writer.writerow([r[i] for i in keep])
        texts[f] = buf.getvalue()
    return texts


@pytest.mark.parametrize("name", list(SPECS))
def test_sample_spec_records_are_unchanged(name: str, tmp_path: Path) -> None:
    if name == "digits":
        pytest.importorskip("sklearn")
    got = records(name, tmp_path / "run")
    for f, text in got.items():
        want = (GOLDEN / name / f).read_text()
        assert text == want, f"{name}/{f} differs from the golden records"


if __name__ == "__main__":
    import tempfile

    for spec_name in SPECS if len(sys.argv) < 2 else sys.argv[1:]:
        with tempfile.TemporaryDirectory() as tmp:
            for f, text in records(spec_name, Path(tmp) / "run").items():
                (GOLDEN / spec_name).mkdir(parents=True, exist_ok=True)
                (GOLDEN / spec_name / f).write_text(text)
