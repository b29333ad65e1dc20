"""One finding of the diagnosis, built the same way by every rule."""

from __future__ import annotations

from typing import Any


def finding(code: str, severity: str, message: str, suggestion: str, **evidence: Any) -> dict:
    """A finding: ``code``, ``severity`` (info | warning | critical), ``message``,
    ``suggestion`` and the ``evidence`` numbers it rests on (see docs/run-format.md)."""
    return {
        "code": code,
        "severity": severity,
        "message": message,
        "suggestion": suggestion,
        "evidence": evidence,
    }
