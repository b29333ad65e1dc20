"""The bad-input battery: every command, fed what a new user gets wrong, answers with one line
(``error: ...``), the exit code of bad input (2) and no traceback.

Each case builds its input in a fresh folder and names a keyword its message must hold.
"""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mtldiag.cli import app

from ..conftest import SYNTHETIC, write_spec

runner = CliRunner()

# User code a spec can name (``bad_code.py:fn``): each callable breaks one way.
BAD_CODE = """
import torch
from mtldiag.examples.synthetic import build_loader as _loader, build_model as _model


def raising_model(**kw):
    raise RuntimeError("weights file not found")


def not_a_module(**kw):
    return 42


def frozen_model(**kw):
    model = _model(**kw)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def forward_fails(**kw):
    model = _model(**kw)

    def forward(x):
        raise ValueError("my forward broke")

    model.forward = forward
    return model


def not_iterable(**kw):
    return 42


def empty_loader(**kw):
    return []


class FailingLoader:
    def __init__(self, inner, after):
        self.inner, self.after = inner, after

    def __iter__(self):
        for i, batch in enumerate(self.inner):
            if i >= self.after:
                raise OSError("corrupt shard")
            yield batch


def fails_at_once(**kw):
    return FailingLoader(_loader(**kw), 0)


def fails_after_one(**kw):
    return FailingLoader(_loader(**kw), 1)


def infinite_loss(pred, target):
    return (pred - pred.detach()).sum() + float("inf")


def not_scalar(pred, target):
    return (pred - target.float()) ** 2


def losses_not_dict(model, batch):
    return [1.0]


def loader_of_strings(**kw):
    return ["a batch", "another"]


def eval_raises(model, loader):
    return {"a": 1 / 0}
"""


def _spec(**changes: object) -> Callable[[Path], list[str]]:
    """A case: the synthetic spec with ``changes`` (``None`` deletes a key), as ``validate``."""
    return _spec_cmd("validate", **changes)


def _spec_cmd(command: str, *extra: str, **changes: object) -> Callable[[Path], list[str]]:
    def build(tmp: Path) -> list[str]:
        data = copy.deepcopy(SYNTHETIC)
        for key, value in changes.items():
            target, _, leaf = key.replace("__", ".").rpartition(".")
            node = data
            for part in filter(None, target.split(".")):
                node = node[part]
            if value is None:
                node.pop(leaf, None)
            else:
                node[leaf] = value
        return [command, str(write_spec(tmp, data)), *extra]

    return build


def _file(content: bytes | str, name: str = "spec.yaml", command: str = "validate"):
    def build(tmp: Path) -> list[str]:
        path = tmp / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        return [command, str(path)]

    return build


def _args(*argv: str) -> Callable[[Path], list[str]]:
    """A case given as a command line; ``{spec}`` is the synthetic spec, ``{tmp}`` the folder."""

    def build(tmp: Path) -> list[str]:
        spec = write_spec(tmp, SYNTHETIC)
        return [a.format(spec=spec, tmp=tmp) for a in argv]

    return build


def _with_run(edit: Callable[[Path], None], *argv: str) -> Callable[[Path], list[str]]:
    """A case on a copy of a real run directory, damaged by ``edit``; ``{run}`` is its path."""

    def build(tmp: Path) -> list[str]:
        run = tmp / "run"
        shutil.copytree(_RUN["dir"], run)
        edit(run)
        spec = write_spec(tmp, SYNTHETIC)
        return [a.format(run=run, tmp=tmp, spec=spec) for a in argv]

    return build


def _summary(**fields: object) -> Callable[[Path], None]:
    def edit(run: Path) -> None:
        data = json.loads((run / "summary.json").read_text())
        data.update(fields)
        (run / "summary.json").write_text(json.dumps(data))

    return edit


def _write(name: str, content: bytes | str) -> Callable[[Path], None]:
    def edit(run: Path) -> None:
        path = run / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)

    return edit


def _first_run(key: str, value: object) -> Callable[[Path], None]:
    def edit(run: Path) -> None:
        data = json.loads((run / "summary.json").read_text())
        data["runs"][0][key] = value
        (run / "summary.json").write_text(json.dumps(data))

    return edit


def _nothing(run: Path) -> None:
    pass


BINARY = b"\xff\xfe\x00\x81garbage\x00\xc3\x28"
CODE = "bad_code.py:"
SYN_LOADER = SYNTHETIC["data"]
SYN_MODEL = SYNTHETIC["model"]

# (id, case, exit code, keyword of the message)
CASES = [
    # ---- the spec file itself
    ("spec-missing", _args("validate", "{tmp}/nope.yaml"), 2, "does not exist"),
    ("spec-is-dir", _args("validate", "{tmp}"), 2, "is a directory"),
    ("spec-binary", _file(BINARY), 2, "not UTF-8"),
    ("spec-binary-profile", _file(BINARY, command="profile"), 2, "not UTF-8"),
    ("spec-bad-yaml", _file("model: [unclosed\n"), 2, "invalid YAML"),
    ("spec-empty", _file(""), 2, "empty"),
    ("spec-a-list", _file("- a\n- b\n"), 2, "mapping"),
    ("spec-unknown-key", _spec(sharde="auto"), 2, "Did you mean 'shared'"),
    ("spec-no-model", _spec(model=None), 2, "'model': is required"),
    ("spec-no-data", _spec(data=None), 2, "'data': is required"),
    ("spec-no-tasks", _spec(tasks=None), 2, "'tasks'"),
    ("spec-seed-negative", _spec(seed=-1), 2, "'seed': must be a whole number from 0 to"),
    ("spec-seed-huge", _spec(seed=20_000_000_000_000), 2, "'seed': must be a whole number"),
    ("spec-seed-text", _spec(seed="zero"), 2, "'seed'"),
    ("spec-device", _spec(device="tpu"), 2, "not a device"),
    ("spec-precision", _spec(precision="fp8"), 2, "not supported"),
    ("spec-steps-zero", _spec(profile={"steps": 0}), 2, "'profile.steps'"),
    ("spec-steps-huge", _spec(profile={"steps": 10**26}), 2, "'profile.steps'"),
    ("spec-every-negative", _spec(profile={"every": -1}), 2, "'profile.every'"),
    ("spec-method", _spec(profile={"method": "pcgard"}), 2, "Did you mean 'pcgrad'"),
    ("spec-compare-seed", _spec(compare={"seeds": [0, -3]}), 2, "'compare.seeds[1]'"),
    ("spec-compare-every", _spec(compare={"every": -2}), 2, "'compare.every'"),
    ("spec-loss-unknown", _spec(tasks__a={"loss": "mse2"}), 2, "unknown loss"),
    ("spec-weight", _spec(tasks__a={"loss": "mse", "weight": -1}), 2, "'tasks.a.weight'"),
    ("spec-losses-type", _spec(losses=3), 2, "'losses'"),
    ("spec-shared", _spec(shared=["decoder.*"]), 2, "matches no trainable parameter"),
    ("spec-optimizer", _spec(optimizer={"name": "sgdd", "lr": 0.1}), 2, "unknown optimizer 'sgdd'"),
    ("spec-optimizer-kw", _spec(optimizer={"name": "sgd", "lrr": 0.1}), 2, "'optimizer.lrr'"),
    ("spec-lr-text", _spec(optimizer={"name": "sgd", "lr": "fast"}), 2, "'optimizer.lr'"),
    ("spec-checks-type", _spec(checks="conflict_rate"), 2, "'checks'"),
    (
        "spec-checks-rule",
        _spec_cmd("profile", checks=[{"metric": "conflict_rat", "max": 1}]),
        2,
        "Did you mean 'conflict_rate'",
    ),
    # ---- the user's code the spec names
    ("model-import", _spec(model={"factory": "no_such_mod:fn"}), 2, "no_such_mod"),
    ("model-raises", _spec(model={"factory": CODE + "raising_model"}), 2, "weights file"),
    ("model-not-module", _spec(model={"factory": CODE + "not_a_module"}), 2, "nn.Module"),
    ("model-kwargs", _spec(model={**SYN_MODEL, "kwargs": {"depth": 3}}), 2, "rejected"),
    ("model-frozen", _spec(model={**SYN_MODEL, "factory": CODE + "frozen_model"}), 2, "frozen"),
    (
        "model-forward",
        _spec(model={**SYN_MODEL, "factory": CODE + "forward_fails"}),
        2,
        "bad_code.py",
    ),
    ("data-not-iterable", _spec(data={"factory": CODE + "not_iterable"}), 2, "not iterable"),
    ("data-empty", _spec(data={"factory": CODE + "empty_loader"}), 2, "empty"),
    (
        "data-fails-at-once",
        _spec(data={**SYN_LOADER, "factory": CODE + "fails_at_once"}),
        2,
        "corrupt shard",
    ),
    (
        "data-fails-after-one",
        _spec(data={**SYN_LOADER, "factory": CODE + "fails_after_one"}),
        2,
        "bad_code.py",
    ),
    ("data-strings", _spec(data={"factory": CODE + "loader_of_strings"}), 2, "(inputs, targets)"),
    ("loss-infinite", _spec(tasks__a={"loss": CODE + "infinite_loss"}), 2, "is inf"),
    ("loss-not-scalar", _spec(tasks__a={"loss": CODE + "not_scalar"}), 2, "not a scalar"),
    ("losses-not-dict", _spec(tasks=None, losses=CODE + "losses_not_dict"), 2, "dict"),
    ("output-key", _spec(tasks__a={"output": "z", "loss": "mse"}), 2, "has no key 'z'"),
    ("ce-float-targets", _spec(tasks__a={"loss": "cross_entropy"}), 2, "class probabilities"),
    (
        "profile-data-fails",
        _spec_cmd("profile", data={**SYN_LOADER, "factory": CODE + "fails_at_once"}),
        2,
        "bad_code.py",
    ),
    (
        "spec-markup-in-message",
        _spec(tasks={"c[/]": {"output": "a", "target": "a", "loss": "x"}}),
        2,
        "'tasks.c[/].loss': unknown loss 'x'",
    ),
    # ---- profile's options
    (
        "profile-seed-huge",
        _args("profile", "{spec}", "--seed", "99999999999999999999999"),
        2,
        "'--seed': must be a whole number from 0 to 4294967295",
    ),
    ("profile-seed-negative", _args("profile", "{spec}", "--seed", "-1"), 2, "'--seed'"),
    ("profile-steps-zero", _args("profile", "{spec}", "--steps", "0"), 2, "'--steps'"),
    (
        "profile-steps-float",
        _args("profile", "{spec}", "--steps", "1e26"),
        2,
        "'--steps'",
    ),
    ("profile-steps-huge", _args("profile", "{spec}", "--steps", "1" + "0" * 26), 2, "'--steps'"),
    ("profile-every-negative", _args("profile", "{spec}", "--every", "-1"), 2, "'--every'"),
    ("profile-method", _args("profile", "{spec}", "--method", "nope"), 2, "nope"),
    ("profile-method-hp", _args("profile", "{spec}", "--method", "cagrad:c=-1"), 2, "`c`"),
    ("profile-device", _args("profile", "{spec}", "--device", "tpu"), 2, "tpu"),
    (
        "profile-out-under-file",
        _args("profile", "{spec}", "--steps", "1", "--out", "{spec}/run"),
        2,
        "cannot write",
    ),
    ("profile-unknown-option", _args("profile", "{spec}", "--stesp", "3"), 2, "--stesp"),
    (
        "profile-rules-dir",
        _args("profile", "{spec}", "--steps", "1", "--out", "{tmp}/r", "--rules", "{tmp}"),
        2,
        "is a directory",
    ),
    # ---- compare's options
    ("compare-seeds-text", _args("compare", "{spec}", "--seeds", "a,b"), 2, "whole numbers"),
    ("compare-seeds-empty", _args("compare", "{spec}", "--seeds", ","), 2, "--seeds is empty"),
    (
        "compare-seeds-repeat",
        _args("compare", "{spec}", "-m", "ew", "--seeds", "0,0"),
        2,
        "repeats",
    ),
    (
        "compare-seeds-huge",
        _args("compare", "{spec}", "-m", "ew", "--seeds", "0,99999999999"),
        2,
        "'--seeds': must be a whole number from 0 to",
    ),
    ("compare-methods-twice", _args("compare", "{spec}", "-m", "ew,ew"), 2, "more than once"),
    (
        "compare-methods-typo",
        _args("compare", "{spec}", "-m", "ew,pcgard"),
        2,
        "Did you mean 'pcgrad'",
    ),
    ("compare-no-methods", _args("compare", "{spec}"), 2, "no methods"),
    ("compare-sweep", _args("compare", "{spec}", "-m", "ew", "--sweep", "-1"), 2, "--sweep"),
    ("compare-every", _args("compare", "{spec}", "-m", "ew", "--every", "-3"), 2, "'--every'"),
    ("compare-steps", _args("compare", "{spec}", "-m", "ew", "--steps", "0"), 2, "'--steps'"),
    ("compare-seed-option", _args("compare", "{spec}", "-m", "ew", "--seed", "1"), 2, "--seed"),
    (
        "compare-sweep-huge",
        _args("compare", "{spec}", "-m", "ew", "--sweep", "1000000000"),
        2,
        "'--sweep': must be a whole number from 0 to 1000,",
    ),
    (
        "spec-sweep-huge",
        _spec(compare={"methods": ["ew"], "sweep": 10**9}),
        2,
        "'compare.sweep': must be a whole number from 0 to 1000,",
    ),
    (
        "spec-sweep-huge-compare",
        _spec_cmd("compare", compare={"methods": ["ew"], "sweep": 1001}),
        2,
        "'compare.sweep': must be a whole number from 0 to 1000,",
    ),
    # ---- compare: the user's evaluation breaks in every run (each run fails alone: exit 1)
    (
        "compare-eval-raises",
        _spec_cmd("compare", "-m", "ew", "--steps", "1", eval=CODE + "eval_raises"),
        1,
        "every run failed; the first: ew (seed 0) in evaluation after step 1: eval "
        "'bad_code.py:eval_raises' raised ZeroDivisionError: division by zero "
        "(at bad_code.py:75 in eval_raises)",
    ),
    (
        "compare-val-factory-raises",
        _spec_cmd(
            "compare", "-m", "ew", "--steps", "1", data__val={"factory": CODE + "raising_model"}
        ),
        1,
        "raised RuntimeError: weights file not found (at bad_code.py:7 in raising_model)",
    ),
    (
        "compare-val-loader-raises",
        _spec_cmd(
            "compare",
            "-m",
            "ew",
            "--steps",
            "1",
            data__val={"factory": CODE + "fails_at_once", "kwargs": SYN_LOADER["kwargs"]},
        ),
        1,
        "the validation loader (data.val, batch 0) raised OSError: corrupt shard (at bad_code.py:",
    ),
    # ---- report
    ("report-missing", _args("report", "{tmp}/nope"), 2, "does not exist"),
    (
        "report-a-file",
        _with_run(_nothing, "report", "{run}/summary.json"),
        2,
        "is a file, not a run directory",
    ),
    ("report-empty-dir", _args("report", "{tmp}"), 2, "not a usable mtldiag run directory"),
    ("report-runs-int", _with_run(_summary(runs=5), "report", "{run}"), 2, "'runs'"),
    (
        "report-string-number",
        _with_run(_first_run("steps", "many"), "report", "{run}"),
        2,
        "'runs[0].steps'",
    ),
    (
        "report-garbage-steps",
        _with_run(
            lambda r: [(r / "summary.json").unlink(), _write("steps.csv", BINARY + b"\n1,2\n")(r)],
            "report",
            "{run}",
        ),
        2,
        "steps.csv",
    ),
    (
        "report-empty-summary",
        _with_run(_write("summary.json", "{}"), "report", "{run}"),
        2,
        "summary",
    ),
    # ---- check
    ("check-missing", _args("check", "{tmp}/nope"), 2, "nope"),
    ("check-runs-int", _with_run(_summary(runs=5), "check", "{run}"), 2, "'runs'"),
    (
        "check-string-number",
        _with_run(_first_run("final_loss", "low"), "check", "{run}"),
        2,
        "'runs[0].final_loss'",
    ),
    (
        "check-empty-summary",
        _with_run(_write("summary.json", "{}"), "check", "{run}"),
        2,
        "summary",
    ),
    (
        "check-binary-summary",
        _with_run(_write("summary.json", BINARY), "check", "{run}"),
        2,
        "summary",
    ),
    (
        "check-rules-dir",
        _with_run(_nothing, "check", "{run}", "--rules", "{tmp}"),
        2,
        "is a directory",
    ),
    (
        "check-rules-binary",
        _with_run(_write("rules.yaml", BINARY), "check", "{run}", "--rules", "{run}/rules.yaml"),
        2,
        "not UTF-8",
    ),
    (
        "check-rules-missing",
        _with_run(_nothing, "check", "{run}", "--rules", "{tmp}/none.yaml"),
        2,
        "does not exist",
    ),
    (
        "check-rules-yaml",
        _with_run(_write("rules.yaml", "- [x"), "check", "{run}", "--rules", "{run}/rules.yaml"),
        2,
        "not valid YAML",
    ),
    (
        "check-rules-metric",
        _with_run(
            _write("rules.yaml", "- {metric: conflict_rat, max: 1}"),
            "check",
            "{run}",
            "--rules",
            "{run}/rules.yaml",
        ),
        2,
        "conflict_rat",
    ),
    ("check-format", _with_run(_nothing, "check", "{run}", "--format", "xml"), 2, "--format"),
    (
        "check-baseline-missing",
        _with_run(_nothing, "check", "{run}", "--baseline", "{tmp}/nope"),
        2,
        "nope",
    ),
    (
        "check-junit-under-file",
        _with_run(
            _write("rules.yaml", "- {metric: conflict_rate, max: 1}"),
            "check",
            "{run}",
            "--rules",
            "{run}/rules.yaml",
            "--junit",
            "{run}/rules.yaml/x.xml",
        ),
        2,
        "cannot write",
    ),
    # ---- methods, and the app itself
    ("methods-family", _args("methods", "--family", "nope"), 2, "nope"),
    ("unknown-command", _args("profil", "{spec}"), 2, "profil"),
    ("debug-keeps-code", _args("--debug", "profile", "{spec}", "--seed", "-1"), 2, "'--seed'"),
]

_RUN: dict[str, Path] = {}


@pytest.fixture(scope="module", autouse=True)
def _run_dir(profile_run: Path) -> None:
    _RUN["dir"] = profile_run


@pytest.mark.parametrize(
    ("build", "code", "keyword"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_is_one_line_and_its_exit_code(tmp_path: Path, monkeypatch, build, code, keyword):
    (tmp_path / "bad_code.py").write_text(BAD_CODE)
    monkeypatch.chdir(tmp_path)  # run directories, if any, land in the test's folder
    argv = build(tmp_path)
    res = runner.invoke(app, argv)
    assert res.exit_code == code, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    # One line: the error and its hint, no traceback (but the one --debug asks for).
    assert ("Traceback" in res.output) == ("--debug" in argv), res.output
    lines = res.output.splitlines()
    errors = [x for x in lines if x.lower().startswith("error:") or "─ Error ─" in x]
    assert len(errors) == 1, res.output  # ours, or Click's box for a malformed command line
    assert keyword in " ".join(res.output.split()), res.output  # Rich may wrap long lines


def test_the_battery_is_large_and_covers_every_command(tmp_path: Path):
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 60
    commands = set()
    for i, case in enumerate(CASES):
        (tmp_path / str(i)).mkdir()
        commands.add(case[1](tmp_path / str(i))[0])
    assert commands >= {"validate", "profile", "compare", "report", "check", "methods"}
