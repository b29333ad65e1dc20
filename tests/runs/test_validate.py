"""``validate_spec`` finds what a run would refuse before any training."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from mtldiag.cli import app
from mtldiag.errors import SpecError
from mtldiag.runs.validate import validate_spec
from mtldiag.spec import parse_spec

from ..conftest import SYNTHETIC, write_spec


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"representation": "nosuchmodule"}, "representation 'nosuchmodule' is not a module"),
        # a method's own space: auto finds no one module holding encoder and a head
        (
            {"shared": ["encoder.*", "heads.a.*"], "compare": {"methods": ["mgda@representation"]}},
            "representation: auto found no module",
        ),
        (
            {"shared": ["encoder.*", "heads.a.*"], "profile": {"method": "mgda@representation"}},
            "representation: auto found no module",
        ),
    ],
)
def test_validate_checks_the_representation_its_runs_would_take(
    tmp_path: Path, changes: dict, message: str
):
    # was: "ok", then profile or compare refused the module
    with pytest.raises(SpecError, match=message):
        validate_spec(parse_spec({**SYNTHETIC, **changes}))
    res = CliRunner().invoke(app, ["validate", str(write_spec(tmp_path, {**SYNTHETIC, **changes}))])
    assert res.exit_code == 2 and res.output.strip().startswith("error:"), res.output
    assert "Traceback" not in res.output


def test_validate_accepts_a_representation_that_exists():
    spec = parse_spec(
        {
            **SYNTHETIC,
            "representation": "encoder",
            "compare": {"methods": ["ew", "mgda@parameters"]},
        }
    )
    assert validate_spec(spec)["shared_numel"] > 0
