"""Lightning: the callback on a tiny module, Trainer(max_steps=..., accelerator="cpu")."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from mtldiag import methods
from mtldiag.engine.balancer import Balancer
from mtldiag.errors import MtldiagError
from mtldiag.integrations.lightning import MethodBackward, MtldiagCallback

TASKS = ("a", "b")


def _loader() -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 6, generator=g)
    # Opposite targets: the two tasks pull the shared layer apart.
    return DataLoader(TensorDataset(x, x[:, :1], -x[:, :1]), batch_size=16)


class TwoTask(pl.LightningModule):
    def __init__(self, balance: str | None = None, on_z: bool = False) -> None:
        super().__init__()
        self.on_z = on_z
        torch.manual_seed(0)
        self.trunk = nn.Linear(6, 8)
        self.heads = nn.ModuleDict({t: nn.Linear(8, 1) for t in TASKS})
        if balance is not None:
            self.automatic_optimization = False
            self.mtl = MethodBackward(balance, every=1)

    def training_step(self, batch, batch_idx):
        x, ya, yb = batch
        h = torch.relu(self.trunk(x))
        losses = {
            "a": nn.functional.mse_loss(self.heads["a"](h), ya),
            "b": nn.functional.mse_loss(self.heads["b"](h), yb),
        }
        if not self.automatic_optimization:
            opt = self.optimizers()
            opt.zero_grad()
            self.mtl.backward(self, losses, features=h if self.on_z else None)
            opt.step()
            return {"loss": sum(losses.values()).detach(), "task_losses": losses}
        return {"loss": sum(losses.values()), "task_losses": losses}

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(module: TwoTask, tmp_path: Path, steps: int = 4) -> MtldiagCallback:
    callback = MtldiagCallback(every=2, out=tmp_path / "run")
    trainer = pl.Trainer(
        max_steps=steps,
        accelerator="cpu",
        callbacks=[callback],
        logger=CSVLogger(tmp_path / "logs", name="t", version=0),
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, _loader())
    return callback


def _first_cosine() -> float:
    """The trunk-gradient cosine of tasks a and b on the first batch, computed by hand."""
    module = TwoTask()
    out = module.training_step(next(iter(_loader())), 0)["task_losses"]
    params = list(module.trunk.parameters())
    ga, gb = (
        torch.cat([g.reshape(-1) for g in torch.autograd.grad(out[t], params, retain_graph=True)])
        for t in TASKS
    )
    return float(torch.nn.functional.cosine_similarity(ga, gb, dim=0))


def _pairs(run: Path) -> list[dict[str, str]]:
    with open(run / "pairs.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_callback_profiles_and_training_goes_on(tmp_path: Path):
    module = TwoTask()
    before = module.trunk.weight.detach().clone()
    callback = _fit(module, tmp_path)
    assert not torch.equal(before, module.trunk.weight)  # Lightning's own optimizer stepped
    pairs = _pairs(tmp_path / "run")
    assert {(r["a"], r["b"]) for r in pairs} == {("a", "b")}
    assert sorted({int(r["step"]) for r in pairs}) == [0, 2]  # every 2 of 4 steps
    first = next(r for r in pairs if r["layer"] == "*" and r["step"] == "0")
    assert float(first["cosine"]) == pytest.approx(_first_cosine(), abs=1e-5)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["runs"][0]["steps"] == 4 and callback.summary is not None
    assert (tmp_path / "run" / "report.html").is_file()
    # The same scalars went to the Trainer's logger.
    with open(tmp_path / "logs" / "t" / "version_0" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert "cosine/a-vs-b" in rows[0] and "loss/a" in rows[0]
    assert "training_step" not in vars(module)  # the wrapper is gone after fit


def test_manual_optimization_balances_with_a_method(tmp_path: Path):
    module = TwoTask(balance="mgda")
    before = module.trunk.weight.detach().clone()
    _fit(module, tmp_path)
    assert not torch.equal(before, module.trunk.weight)
    with open(tmp_path / "run" / "steps.csv", newline="") as f:
        steps = list(csv.DictReader(f))
    assert [int(r["step"]) for r in steps] == [0, 1, 2, 3]
    # The method's own weights are recorded per step: MGDA's, not equal weighting's ones.
    weights = [(float(r["weight/a"]), float(r["weight/b"])) for r in steps]
    assert any(abs(wa - 1) > 1e-3 or abs(wb - 1) > 1e-3 for wa, wb in weights)
    assert {(r["a"], r["b"]) for r in _pairs(tmp_path / "run")} == {("a", "b")}


def test_manual_optimization_balances_on_the_representation(tmp_path: Path):
    # One Lightning step of MGDA on z = relu(trunk(x)) is the Balancer's representation step.
    module = TwoTask(balance="mgda", on_z=True)
    _fit(module, tmp_path, steps=1)
    by_hand = TwoTask()
    x, ya, yb = next(iter(_loader()))
    h = torch.relu(by_hand.trunk(x))
    losses = {
        "a": nn.functional.mse_loss(by_hand.heads["a"](h), ya),
        "b": nn.functional.mse_loss(by_hand.heads["b"](h), yb),
    }
    Balancer(
        methods.create("mgda"), by_hand.trunk.named_parameters(), list(by_hand.heads.parameters())
    ).backward(losses, features=h)
    expected = by_hand.trunk.weight.detach() - 0.1 * by_hand.trunk.weight.grad
    assert torch.allclose(module.trunk.weight.detach(), expected, atol=1e-6)
    on_params = TwoTask(balance="mgda")
    _fit(on_params, tmp_path / "p", steps=1)
    assert not torch.allclose(on_params.trunk.weight, module.trunk.weight, atol=1e-6)
    assert {r["layer"] for r in _pairs(tmp_path / "run")} == {"*", "representation"}
    # ... and the summary says so: z's numbers are never filed under a parameter layer
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["jacobian"] == "representation" and summary["layers"] == ["representation"]
    assert list(summary["runs"][0]["pairs"][0]["layers"]) == ["representation"]
    with pytest.raises(MtldiagError, match="on some steps and not others"):
        x, ya, yb = next(iter(_loader()))
        h = torch.relu(module.trunk(x))
        module.mtl.backward(module, {"a": module.heads["a"](h).mean(), "b": h.mean()})
