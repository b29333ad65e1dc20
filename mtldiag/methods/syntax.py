"""The method syntax of the CLI and the spec: ``pcgrad``, ``cagrad:c=0.4,rescale=1``, lists.

One parser for both, so ``--methods`` and ``compare.methods`` read alike; names are checked
against the registry, aliases reach the spec's ``methods:`` hyper-parameters. A suffix
``@representation`` or ``@parameters`` (``mgda@representation``, ``cagrad:c=0.4@parameters``)
fixes the gradient space of that method's runs whatever ``--wrt`` says, so one comparison can
put ``mgda`` on the representation beside ``mgda`` on the parameters; the suffix is part of
the label, so every table and record names the space.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from mtldiag.errors import MtldiagError, SpecError
from mtldiag.methods.base import Method, MethodError
from mtldiag.methods.registry import create, lookup

WRT = ("parameters", "representation")  # what per-task gradients can be taken with respect to


@dataclass(frozen=True)
class MethodSpec:
    """A balancing method by registry name with hyper-parameters."""

    name: str
    hparams: dict[str, Any] = field(default_factory=dict)
    wrt: str | None = None  # "parameters" | "representation"; None: the comparison's --wrt

    @property
    def label(self) -> str:
        suffix = f"@{self.wrt}" if self.wrt else ""
        if not self.hparams:
            return self.name + suffix
        args = ",".join(f"{k}={_compact(v)}" for k, v in sorted(self.hparams.items()))
        return f"{self.name}:{args}{suffix}"


def _compact(value: Any) -> str:
    """A hyper-parameter as it reads in a label: ``{a:0.1,b:1}``, not ``{'a': 0.1, 'b': 1}``."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_compact(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_compact(v) for v in value) + "]"
    return str(value)


def parse_method(entry: Any, defaults: dict[str, dict[str, Any]] | None = None) -> MethodSpec:
    """``"pcgrad"``, ``"cagrad:c=0.4"``, or ``{"gradnorm": {"alpha": 1.5}}`` -> MethodSpec."""
    defaults = defaults or {}
    if isinstance(entry, MethodSpec):
        return entry
    if isinstance(entry, dict) and len(entry) == 1:
        ((key, hp),) = entry.items()
        name, wrt = split_wrt(str(key))
        if hp is not None and not isinstance(hp, dict):
            raise SpecError(f"method '{name}': hyper-parameters must be a mapping, not {hp!r}.")
        return MethodSpec(name, {**_defaults(name, defaults), **(hp or {})}, wrt)
    if not isinstance(entry, str) or not entry.strip():
        raise SpecError(f"a method must be a name like 'pcgrad' or 'cagrad:c=0.4', not {entry!r}.")
    text, wrt = split_wrt(entry.strip())
    name, _, args = text.partition(":")
    hp: dict[str, Any] = _defaults(name.strip(), defaults)
    if args:
        for part in _split_top(args):
            key, eq, raw = part.partition("=")
            if not eq or not key.strip():
                raise SpecError(
                    f"method '{entry}': '{part}' is not 'name=value'.",
                    hint="write hyper-parameters as 'cagrad:c=0.4,rescale=1'",
                )
            hp[key.strip()] = _scalar(raw)
    return MethodSpec(name.strip(), hp, wrt)


def split_wrt(entry: str) -> tuple[str, str | None]:
    """``"mgda@representation"`` -> ``("mgda", "representation")``; no suffix -> ``None``.

    Only the last ``@`` counts and its word must be one of :data:`WRT` (a short form such as
    ``@rep`` is refused with the two words, so a label always spells its space out).
    """
    head, at, tail = entry.rpartition("@")
    if not at:
        return entry, None
    word = tail.strip()
    if word not in WRT:
        # A space written before the hyper-parameters (uw@representation:lr=0.02): move it last.
        lead = next(
            (w for w in WRT if word.startswith(w) and word[len(w) : len(w) + 1] in ":,"), None
        )
        if lead and head.strip():
            rest = word[len(lead) + 1 :]
            sep = "," if ":" in head else ":"
            hint = f"the suffix comes last: {head.strip()}{sep}{rest}@{lead}"
        else:
            name = head.strip() or "mgda"
            hint = f"write {name}@representation or {name}@parameters"
        raise SpecError(f"method '{entry}': '@{word}' is not a gradient space.", hint=hint)
    if not head.strip():
        raise SpecError(f"method '{entry}': no method name before '@'.")
    return head.strip(), word


def _scalar(raw: str) -> Any:
    """A CLI hyper-parameter value: YAML, except that ``1e6`` is a number (YAML 1.1 says text)."""
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def canonical_name(name: str) -> str | None:
    """The registry's name for a method or alias (``uw`` -> ``uncertainty``); None if unknown."""
    try:
        return lookup(name).name
    except MtldiagError:
        return None


def _defaults(name: str, defaults: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The spec's ``methods:`` hyper-parameters for ``name``, whichever alias names it."""
    if name in defaults:
        return dict(defaults[name])
    canonical = canonical_name(name)
    return dict(defaults.get(canonical, {})) if canonical else {}


def _split_top(args: str) -> list[str]:
    """Split ``k=v,k=v`` on commas outside braces/brackets (YAML flow values keep theirs)."""
    parts, depth, cur = [], 0, ""
    for ch in args:
        depth += (ch in "{[") - (ch in "}]")
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return [p for p in [*parts, cur] if p.strip()]


def parse_methods(
    text_or_list: Any, defaults: dict[str, dict[str, Any]] | None = None
) -> tuple[MethodSpec, ...]:
    """A comma list (``"ew,pcgrad,cagrad:c=0.4"``) or a YAML list of method entries."""
    if isinstance(text_or_list, str):
        items: list[Any] = _split_methods(text_or_list)
    elif isinstance(text_or_list, list | tuple):
        items = list(text_or_list)
    else:
        raise SpecError(
            f"methods must be a list or a comma-separated string, not {text_or_list!r}."
        )
    if not items:
        raise SpecError("no methods given.", hint="for example --methods ew,pcgrad,mgda")
    return tuple(parse_method(i, defaults) for i in items)


def _split_methods(text: str) -> list[str]:
    # "ew,cagrad:c=0.4,rescale=1,pcgrad": a piece with '=' but no ':' belongs to the previous.
    out: list[str] = []
    for piece in [p.strip() for p in _split_top(text)]:
        if "=" in piece and ":" not in piece and out:
            out[-1] += "," + piece
        else:
            out.append(piece)
    return out


def parse(text: str) -> Method:
    """Create a method from a CLI string: ``"pcgrad"``, ``"cagrad:c=0.4,rescale=1"``.

    Values are read as YAML scalars (``0.4`` float, ``1`` int, ``true`` bool, ``mean``
    string, ``1e-3`` float); nested values use YAML flow style (``fixed:weights={a: 1, b: 2}``).
    The syntax is the spec's and the CLI's (:func:`parse_method`).
    """
    try:
        ms = parse_method(text)
    except SpecError as exc:
        raise MethodError(exc.message, exc.hint) from None
    return create(ms.name, **ms.hparams)
