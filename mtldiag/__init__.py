"""mtldiag: why do my tasks fight, and which fix works on my model?

Library API (the CLI is a thin skin over it)::

    from mtldiag import run_profile, run_compare, run_check, write_report
    from mtldiag import GradientProbe, Balancer, methods       # inside your own loop
    result = run_profile("sample_configs/synthetic.yaml", steps=50)
    print(result.summary["diagnosis"])
"""

from __future__ import annotations

from mtldiag import methods  # noqa: E402
from mtldiag._version import __version__  # noqa: E402
from mtldiag.analysis.check import run_check  # noqa: E402
from mtldiag.engine.balancer import Balancer  # noqa: E402
from mtldiag.engine.probe import GradientProbe  # noqa: E402
from mtldiag.errors import MtldiagError  # noqa: E402
from mtldiag.report import write_report  # noqa: E402
from mtldiag.runs.compare import CompareResult, run_compare  # noqa: E402
from mtldiag.runs.profile import ProfileResult, run_profile  # noqa: E402
from mtldiag.spec import Spec, load_spec  # noqa: E402

__all__ = [
    "Balancer",
    "CompareResult",
    "GradientProbe",
    "MtldiagError",
    "ProfileResult",
    "Spec",
    "__version__",
    "load_spec",
    "methods",
    "run_check",
    "run_compare",
    "run_profile",
    "write_report",
]
