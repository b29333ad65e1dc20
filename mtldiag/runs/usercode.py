"""Errors raised inside the user's code (data loader, model, losses) as one line that names the
user's frame, so a failure deep in a DataLoader worker or a forward reads as ``my_data.py:12``
and not as a torch traceback."""

from __future__ import annotations

import os
import sys
import sysconfig
import traceback
from pathlib import Path

from mtldiag.errors import UserCodeError

_PACKAGE = Path(__file__).resolve().parents[1]  # mtldiag/
_EXAMPLES = _PACKAGE / "examples"  # our samples stand for user code
# Frames in the interpreter's own library and in installed packages (torch, numpy) are never
# the user's: the user's file is the last frame outside them.
_LIBRARY = tuple(
    str(Path(p).resolve())
    for p in {sysconfig.get_path("stdlib"), sysconfig.get_path("purelib"), sys.prefix}
    if p
)


def _is_user_file(filename: str) -> bool:
    path = Path(filename).resolve()
    if path.is_relative_to(_EXAMPLES):
        return True
    if path.is_relative_to(_PACKAGE):
        return False
    return not str(path).startswith(_LIBRARY) and not filename.startswith("<")


def user_frame(exc: BaseException) -> str | None:
    """``file.py:LINE in FUNCTION`` of the innermost frame of ``exc`` in the user's code."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if _is_user_file(f.filename)]
    if not frames:
        return None
    f = frames[-1]
    try:
        shown = os.path.relpath(f.filename)
    except ValueError:  # another drive on Windows
        shown = f.filename
    if shown.startswith(".."):
        shown = f.filename
    return f"{shown}:{f.lineno} in {f.name}"


def user_code_error(what: str, exc: BaseException, hint: str | None = None) -> UserCodeError:
    """``{what} raised KeyError: 'x' (at my_data.py:12 in __iter__)`` as a UserCodeError."""
    frame = user_frame(exc)
    at = f" (at {frame})" if frame else ""
    text = str(exc).strip().splitlines()
    detail = f": {text[0]}" if text else ""
    return UserCodeError(
        f"{what} raised {type(exc).__name__}{detail}{at}",
        hint=hint or "run with --debug for the traceback",
    )
