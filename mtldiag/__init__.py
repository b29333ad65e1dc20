"""mtldiag: why do my tasks fight, and which fix works on my model?

Library API (the CLI is a thin skin over it)::

    from mtldiag import load_spec, run_profile, GradientProbe, methods
    result = run_profile("sample_configs/synthetic.yaml", steps=50)
    print(result.summary["diagnosis"])
"""

from __future__ import annotations

__version__ = "0.1.0"

from mtldiag.errors import MtldiagError  # noqa: E402
from mtldiag.probe import GradientProbe  # noqa: E402
from mtldiag.profile import ProfileResult, run_profile  # noqa: E402
from mtldiag.spec import Spec, load_spec  # noqa: E402

__all__ = [
    "GradientProbe",
    "MtldiagError",
    "ProfileResult",
    "Spec",
    "__version__",
    "load_spec",
    "run_profile",
]
