"""Hugging Face Trainer on a tiny BERT built locally from a BertConfig (no download), CPU."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from torch import nn
from transformers import BertConfig, BertModel, Trainer, TrainingArguments

from mtldiag.errors import MtldiagError, SpecError
from mtldiag.integrations.transformers import MtldiagTrainerMixin


class TwoTaskBert(nn.Module):
    """A topic class and a score from one BERT trunk; HF-style keyword forward."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        cfg = BertConfig(
            vocab_size=50,
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=16,
        )
        self.bert = BertModel(cfg)
        self.topic = nn.Linear(16, 3)
        self.score = nn.Linear(16, 1)

    def forward(self, input_ids, attention_mask, topic, score):
        h = self.bert(input_ids=input_ids, attention_mask=attention_mask).pooler_output
        losses = {
            "topic": nn.functional.cross_entropy(self.topic(h), topic),
            "score": nn.functional.mse_loss(self.score(h).squeeze(-1), score),
        }
        return {"loss": sum(losses.values()), "task_losses": losses}


class MtlTrainer(MtldiagTrainerMixin, Trainer):
    pass


def _data(n: int = 16) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 50, (n, 8), generator=g)
    return [
        {
            "input_ids": ids[i],
            "attention_mask": torch.ones(8, dtype=torch.long),
            "topic": ids[i, 0] % 3,
            "score": ids[i, 1].float() / 50,
        }
        for i in range(n)
    ]


def _train(tmp_path: Path, **mtl) -> tuple[TwoTaskBert, MtlTrainer]:
    model = TwoTaskBert()
    args = TrainingArguments(
        output_dir=str(tmp_path / "hf"),
        max_steps=4,
        per_device_train_batch_size=4,
        learning_rate=1e-2,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        disable_tqdm=True,
        logging_strategy="no",
    )
    trainer = MtlTrainer(model=model, args=args, train_dataset=_data(), mtl_every=2, **mtl)
    trainer.train()
    return model, trainer


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_trainer_profiles_the_task_gradients(tmp_path: Path):
    model, trainer = _train(tmp_path)
    run = tmp_path / "hf" / "mtldiag"
    steps = _rows(run / "steps.csv")
    assert [int(r["step"]) for r in steps] == [0, 1, 2, 3]
    assert [r["instrumented"] for r in steps] == ["1", "0", "1", "0"]
    pairs = _rows(run / "pairs.csv")
    assert {(r["a"], r["b"]) for r in pairs} == {("topic", "score")}
    assert any(r["layer"].startswith("bert.encoder") for r in pairs)  # per-layer rows
    assert (run / "report.html").is_file()
    logged = [h for h in trainer.state.log_history if "cosine/topic-vs-score" in h]
    assert len(logged) == 2  # through Trainer.log, on the two instrumented steps


def test_trainer_balances_with_a_method(tmp_path: Path):
    before = TwoTaskBert().bert.pooler.dense.weight.detach().clone()
    model, _ = _train(tmp_path, mtl_method="pcgrad")
    assert not torch.equal(before, model.bert.pooler.dense.weight)  # the optimizer stepped
    steps = _rows(tmp_path / "hf" / "mtldiag" / "steps.csv")
    assert {r["method"] for r in steps} == {"pcgrad"} and len(steps) == 4


def test_trainer_balances_on_the_representation_of_a_named_module(tmp_path: Path):
    # ew on z = the pooler's output is the parameter-space ew step exactly (the chain rule is
    # linear), so the two trainings agree up to float rounding (~1e-5 after AdamW's 4 steps);
    # MGDA on z solves another problem than on θ (they differ by ~4e-2).
    def gap(a: nn.Module, b: nn.Module) -> float:
        pairs = zip(a.parameters(), b.parameters(), strict=True)
        return max(float((p - q).detach().abs().max()) for p, q in pairs)

    ew_z, _ = _train(tmp_path / "ez", mtl_method="ew", mtl_representation="bert.pooler")
    ew_p, _ = _train(tmp_path / "ep", mtl_method="ew")
    assert gap(ew_z, ew_p) < 1e-4
    mgda_z, _ = _train(tmp_path / "mz", mtl_method="mgda", mtl_representation="bert.pooler")
    mgda_p, _ = _train(tmp_path / "mp", mtl_method="mgda")
    assert gap(mgda_z, mgda_p) > 1e-2
    run = tmp_path / "mz" / "hf" / "mtldiag"
    assert {r["layer"] for r in _rows(run / "pairs.csv")} == {"*", "representation"}
    summary = json.loads((run / "summary.json").read_text())
    assert summary["jacobian"] == "representation" and summary["layers"] == ["representation"]
    assert not mgda_z.bert.pooler._forward_hooks  # the hook is gone after training


def test_a_representation_module_that_is_not_there_is_refused(tmp_path: Path):
    with pytest.raises(SpecError, match="representation 'bert.nope' is not a module"):
        _train(tmp_path, mtl_method="mgda", mtl_representation="bert.nope")
    with pytest.raises(MtldiagError, match="mtl_representation needs mtl_method"):
        _train(tmp_path, mtl_representation="bert.pooler")
