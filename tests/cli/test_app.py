"""The application shell: every command is registered, listed in the order users meet them."""

from typer.testing import CliRunner

from mtldiag.cli import app

runner = CliRunner()


def test_help_lists_every_command_in_workflow_order():
    res = runner.invoke(app, ["--help"], env={"COLUMNS": "120"})
    assert res.exit_code == 0
    names = ["profile", "validate", "compare", "report", "check", "methods"]
    positions = [res.output.index(f" {n} ") for n in names]
    assert positions == sorted(positions)


def test_unknown_command_exits_2():
    res = runner.invoke(app, ["profiel"])
    assert res.exit_code == 2
