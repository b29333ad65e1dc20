"""The README stays true: its spec parses, its Python examples run, its commands exist."""

import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mtldiag.cli import app
from mtldiag.spec import parse_spec

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_the_spec_example_is_a_valid_spec():
    spec_block = next(b for b in _blocks("yaml") if b.startswith("name:"))
    spec = parse_spec(yaml.safe_load(spec_block), "README.md")
    assert spec.task_names == ["a", "b", "c"]
    assert [m.name for m in spec.compare.methods][:3] == ["ew", "init_loss", "uncertainty"]


@pytest.mark.parametrize("index", range(len(_blocks("python"))))
def test_python_examples_run(index: int, tmp_path: Path, monkeypatch):
    block = _blocks("python")[index]
    monkeypatch.chdir(tmp_path)
    code = block.replace('"sample_configs/', f'"{ROOT}/sample_configs/')
    exec(compile(code, f"README.md python block {index}", "exec"), {})


def test_every_command_in_the_commands_table_has_help():
    names = re.findall(r"^\| `mtldiag (\w+)", README, flags=re.M)
    assert set(names) == {"profile", "validate", "compare", "report", "check", "methods"}
    runner = CliRunner()
    for name in names:
        assert runner.invoke(app, [name, "--help"]).exit_code == 0, name
