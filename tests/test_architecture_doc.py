"""docs/architecture.md stays true: every module it lists exists and every module is listed."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

ROOT = Path(__file__).parents[1]
DOC = ROOT / "docs" / "architecture.md"


def listed() -> list[str]:
    """The module paths the doc's list names (``- `engine/step.py` — ...``)."""
    return re.findall(r"^- `([\w/*.]+\.py)`", DOC.read_text(encoding="utf-8"), flags=re.M)


def modules() -> list[str]:
    pkg = ROOT / "mtldiag"
    return sorted(str(p.relative_to(pkg)) for p in pkg.rglob("*.py"))


def test_every_listed_module_exists():
    mods = modules()
    missing = [entry for entry in listed() if not fnmatch.filter(mods, entry)]
    assert not missing, f"docs/architecture.md lists modules that do not exist: {missing}"


def test_every_module_is_listed():
    entries = listed()
    unlisted = [m for m in modules() if not any(fnmatch.fnmatch(m, e) for e in entries)]
    assert not unlisted, f"add these modules to docs/architecture.md: {unlisted}"
