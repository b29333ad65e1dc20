"""Resolve user callables named ``package.module:attr`` or ``path/to/file.py:attr``."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mtldiag.errors import UserCodeError, did_you_mean


def _load_file_module(path: Path) -> Any:
    name = f"mtldiag_user_{abs(hash(str(path)))}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UserCodeError(f"cannot load Python file '{path}'.")
    module = importlib.util.module_from_spec(spec)
    # Make sibling imports inside the user's file work (from mydata import ...).
    parent = str(path.parent)
    if parent not in sys.path:
        sys.path.insert(0, parent)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise UserCodeError(
            f"importing '{path}' raised {type(exc).__name__}: {exc}",
            hint="run the file with python to see the full error, or add --debug",
        ) from exc
    return module


def resolve(ref: str, base_dir: Path | None = None, what: str = "callable") -> Callable[..., Any]:
    """Import ``ref`` and return the attribute it names.

    ``base_dir`` is the spec file's folder: file paths and (as a fallback) modules next to the
    spec are found from there.
    """
    if not isinstance(ref, str) or ":" not in ref:
        raise UserCodeError(
            f"{what} '{ref}' is not of the form 'package.module:name' or 'file.py:name'.",
            hint="for example 'mtldiag.examples.synthetic:build_model'",
        )
    target, _, attr = ref.rpartition(":")
    if target.endswith(".py") or "/" in target or "\\" in target:
        path = Path(target)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        if not path.is_file():
            raise UserCodeError(f"{what} '{ref}': file '{path}' does not exist.")
        module = _load_file_module(path.resolve())
    else:
        module = _import_module(target, base_dir, ref, what)
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(module) if not n.startswith("_")]
            raise UserCodeError(
                f"{what} '{ref}': '{target}' has no attribute '{attr}'.{did_you_mean(part, names)}"
            )
        obj = getattr(obj, part)
    if not callable(obj):
        raise UserCodeError(f"{what} '{ref}' is not callable (it is a {type(obj).__name__}).")
    return obj


def _import_module(target: str, base_dir: Path | None, ref: str, what: str) -> Any:
    added = False
    if base_dir is not None and str(base_dir) not in sys.path:
        # Modules that sit next to the spec file are importable without installing them.
        sys.path.append(str(base_dir))
        added = True
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as exc:
        missing = exc.name or target
        if added:
            sys.path.remove(str(base_dir))
        raise UserCodeError(
            f"{what} '{ref}': cannot import module '{target}' (no module named '{missing}').",
            hint="install the package, fix the name, or give a path like 'my_model.py:build'",
        ) from exc
    except Exception as exc:
        raise UserCodeError(
            f"{what} '{ref}': importing '{target}' raised {type(exc).__name__}: {exc}",
            hint="add --debug to see the traceback",
        ) from exc
