"""Step 1 of a comparison, the plan: its options checked, and its (method, seed) runs in order.

Run labels: a method's label (``pcgrad``, ``cagrad:c=0.4``, ``mgda@representation``);
``single:<task>`` for the single-task baselines; ``sweep:<w1>,<w2>,...`` for
linear-scalarization sweep points. The sweep label shows the point on the simplex (weights
summing to 1); the run trains with those weights times T, the sum convention of every other
method (``ew`` is ``w_i = 1``), so that the sweep point at the centre of the simplex *is*
``ew`` and no sweep point is handicapped by a T-times smaller step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mtldiag.engine.representation import default_space
from mtldiag.errors import MtldiagError
from mtldiag.methods.syntax import canonical_name
from mtldiag.rundir.schema import single_label, sweep_label
from mtldiag.runs.jobs import PlannedRun
from mtldiag.runs.profile import create_method
from mtldiag.spec import MethodSpec, Spec, parse_methods, values
from mtldiag.spec.values import OPTIONS


@dataclass(frozen=True)
class CompareOptions:
    """What a comparison asks for: recorded as ``summary["compare"]``, reused by ``--resume``."""

    methods: tuple[MethodSpec, ...]
    seeds: tuple[int, ...]
    steps: int
    every: int
    single_task: bool
    sweep: int

    def record(self) -> dict[str, Any]:
        return {
            "methods": [m.label for m in self.methods],
            "seeds": list(self.seeds),
            "steps": self.steps,
            "every": self.every,
            "single_task": self.single_task,
            "sweep": self.sweep,
        }


def plan_runs(
    methods: Sequence[MethodSpec],
    seeds: Sequence[int],
    tasks: Sequence[str],
    single_task: bool,
    sweep_weights: Sequence[Sequence[float]],
) -> list[PlannedRun]:
    """Every run of a comparison, seed-major so that partial results cover all methods."""
    runs: list[PlannedRun] = []
    n = len(tasks)
    for seed in seeds:
        for m in methods:
            runs.append(PlannedRun(m.label, seed, m))
        for w in sweep_weights:
            label = sweep_label(w)
            scaled = [float(x) * n for x in w]
            fixed = MethodSpec("fixed", {"weights": dict(zip(tasks, scaled, strict=True))})
            runs.append(PlannedRun(label, seed, fixed))
        if single_task:
            for t in tasks:
                runs.append(PlannedRun(single_label(t), seed, MethodSpec("ew"), (t,)))
    return runs


def compare_options(
    spec: Spec,
    methods: str | Sequence[Any] | None = None,
    seeds: Sequence[int] | None = None,
    steps: int | None = None,
    every: int | None = None,
    single_task: bool | None = None,
    sweep: int | None = None,
    wrt: str | None = None,
) -> CompareOptions:
    """Step 1, plan: the spec's ``compare:`` section with the caller's overrides, checked.

    ``wrt``: the space of methods without an ``@`` suffix (``--wrt``, else the spec's).
    """
    cfg = spec.compare
    if methods is not None:
        # Hyper-parameters from the spec (top-level `methods:` and `compare.hyperparams`)
        # apply to methods named on the command line too.
        section = spec.raw.get("compare") if isinstance(spec.raw.get("compare"), dict) else {}
        hp = {**spec.method_hparams, **(section.get("hyperparams") or {})}
        method_specs = tuple(parse_methods(methods, hp))
    else:
        method_specs = tuple(cfg.methods)
    if not method_specs:
        raise MtldiagError(
            "no methods to compare.",
            hint="pass --methods ew,pcgrad,mgda or set compare.methods in the spec",
        )
    labels = [m.label for m in method_specs]
    twice = sorted({x for x in labels if labels.count(x) > 1})
    if twice:
        raise MtldiagError(
            f"method {', '.join(twice)} is listed more than once.",
            hint="list each method once; seeds repeat it",
        )
    # Fail on a bad name or hyper-parameter before any training; the created methods' full
    # hyper-parameters (defaults filled in) tell two spellings of one run apart.
    created = [create_method(ms) for ms in method_specs]
    _refuse_same_runs(
        method_specs,
        default_space(spec.representation, wrt),
        [m.hyperparams() for m in created],
    )
    seed_list = tuple(seeds) if seeds is not None else tuple(cfg.seeds)
    if seeds is not None:
        seed_list = tuple(values.seed(OPTIONS, "--seeds", s) for s in seed_list)
    if not seed_list:
        raise MtldiagError("--seeds is empty.", hint="for example --seeds 0,1,2")
    if len(set(seed_list)) != len(seed_list):
        raise MtldiagError(
            f"--seeds repeats a seed: {list(seed_list)}.",
            hint="a repeated seed reruns the very same run; for example --seeds 0,1,2",
        )
    # Options are checked by the spec's own bound functions: same values, same words.
    n_steps = (
        values.steps(OPTIONS, "--steps", steps)
        if steps is not None
        else (cfg.steps or spec.profile.steps)
    )
    n_every = values.every(OPTIONS, "--every", every) if every is not None else cfg.every
    n_sweep = cfg.sweep if sweep is None else values.sweep(OPTIONS, "--sweep", sweep)
    want_single = cfg.single_task if single_task is None else single_task
    return CompareOptions(method_specs, seed_list, n_steps, n_every, want_single, n_sweep)


def _refuse_same_runs(
    methods: Sequence[MethodSpec], space: str, hparams: Sequence[dict[str, Any]]
) -> None:
    """Two labels of one run (an alias, ``uw``/``uncertainty``; a suffix naming the default
    space, ``mgda``/``mgda@parameters``; a default written out, ``cagrad``/``cagrad:c=0.4``)
    would train it twice: refused as listed twice. ``hparams``: each method's full
    hyper-parameters, defaults included."""
    seen: dict[tuple[str, str, str], MethodSpec] = {}
    for ms, hp in zip(methods, hparams, strict=True):
        key = (
            canonical_name(ms.name) or ms.name,
            repr(sorted(hp.items())),
            ms.wrt or space,
        )
        first = seen.setdefault(key, ms)
        if first is not ms:
            raise MtldiagError(
                f"methods {first.label} and {ms.label} are the same run (one method, the same "
                f"hyper-parameters, on the {key[2]}): it is listed more than once.",
                hint=f"list it once; a method without a suffix is on the {space} here",
            )
