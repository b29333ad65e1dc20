"""A trained run's per-task metric: the spec's ``eval`` function, else the validation loss,
else the training-loss tail.

Whatever the user's code does wrong here (the eval function raises or returns junk, the
validation loader breaks) is a :class:`UserCodeError` naming the user's frame: a comparison
marks that one run failed and goes on (:func:`mtldiag.runs.jobs.execute_job`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from mtldiag.engine.device import autocast
from mtldiag.errors import MtldiagError, UserCodeError
from mtldiag.runs.build import move_to
from mtldiag.runs.imports import resolve
from mtldiag.runs.losses import check_losses
from mtldiag.runs.train import Prepared
from mtldiag.runs.usercode import user_code_error
from mtldiag.spec import Spec

EVAL_MAX_BATCHES = 200  # a validation pass reads at most this many batches


def evaluation_kind(spec: Spec) -> str:
    """What a run of ``spec`` is evaluated by (a key of ``EVALUATION_TEXT``): its eval
    function, else its validation loader's loss, else the training loss's tail."""
    if spec.eval is not None:
        return "eval_fn"
    return "val_loss" if spec.val is not None else "train_loss_tail"


def evaluate(
    spec: Spec, prep: Prepared, tasks: Sequence[str], val_loader: Any, run: dict[str, Any]
) -> tuple[dict[str, float | None], str]:
    """Per-task metric of a trained model and which evaluation produced it."""
    model = prep.model
    if spec.eval is not None:
        fn = resolve(spec.eval, spec.base_dir, what="eval")
        model.eval()
        try:
            with torch.no_grad():
                values = fn(model, val_loader if val_loader is not None else prep.loader)
        except MtldiagError:
            raise
        except Exception as exc:
            raise user_code_error(f"eval '{spec.eval}'", exc) from exc
        finally:
            model.train()
        if not isinstance(values, dict) or set(tasks) - set(values):
            got = ", ".join(map(str, values)) if isinstance(values, dict) else type(values).__name__
            raise UserCodeError(
                f"eval '{spec.eval}' must return {{task: value}} for {', '.join(tasks)}; "
                f"it returned: {got}."
            )
        out: dict[str, float | None] = {}
        for t in tasks:
            try:
                out[t] = float(values[t])
            except (TypeError, ValueError):
                raise UserCodeError(
                    f"eval '{spec.eval}' returned {values[t]!r} for task '{t}'; "
                    "expected a number (or a one-element tensor)."
                ) from None
        return out, "eval_fn"
    if val_loader is not None:
        return _val_losses(spec, prep, tasks, val_loader), "val_loss"
    return {t: run["final_loss"].get(t) for t in tasks}, "train_loss_tail"


def _val_losses(
    spec: Spec, prep: Prepared, tasks: Sequence[str], loader: Any
) -> dict[str, float | None]:
    sums = dict.fromkeys(tasks, 0.0)
    n = 0
    prep.model.eval()
    try:
        with torch.no_grad():
            for i, batch in enumerate(_val_batches(loader)):
                if i >= EVAL_MAX_BATCHES:
                    break
                try:
                    with autocast(prep.device, spec.precision):
                        raw = prep.loss_fn(prep.model, move_to(batch, prep.device))
                except MtldiagError:
                    raise
                except Exception as exc:  # the user's forward or loss, on a validation batch
                    raise user_code_error(
                        f"the model's forward or a task's loss on validation batch {i}", exc
                    ) from exc
                losses = check_losses(raw, tasks, require_grad=False)
                for t in tasks:
                    sums[t] += float(losses[t])
                n += 1
    finally:
        prep.model.train()
    if n == 0:
        raise UserCodeError("the validation loader (data.val) is empty.")
    return {t: sums[t] / n for t in tasks}


def _val_batches(loader: Any) -> Any:
    """The validation loader's batches; its own errors become one line naming the batch."""
    try:
        it = iter(loader)
    except Exception as exc:
        raise user_code_error("the validation loader (data.val)", exc) from exc
    i = 0
    while True:
        try:
            batch = next(it)
        except StopIteration:
            return
        except MtldiagError:
            raise
        except Exception as exc:
            raise user_code_error(
                f"the validation loader (data.val, batch {i})", exc, "check data.val's factory"
            ) from exc
        yield batch
        i += 1
