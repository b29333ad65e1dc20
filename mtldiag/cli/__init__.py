"""Command-line interface: a thin skin over the library (see :mod:`mtldiag.cli.app`)."""

from __future__ import annotations

# Each import registers its commands on `app`.
from mtldiag.cli import check as _check  # noqa: F401
from mtldiag.cli import compare as _compare  # noqa: E402,F401
from mtldiag.cli import methods as _methods  # noqa: F401
from mtldiag.cli import profile as _profile  # noqa: E402,F401
from mtldiag.cli import report as _report  # noqa: F401
from mtldiag.cli.app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
