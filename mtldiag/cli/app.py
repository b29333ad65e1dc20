"""The Typer application and the one place where library errors become messages and exit codes.

Every command module does ``from mtldiag.cli.app import app, guarded`` and decorates its
command function with ``@app.command()`` then ``@guarded``.
"""

from __future__ import annotations

import functools
import os
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from mtldiag._version import __version__
from mtldiag.engine import distributed
from mtldiag.errors import Interrupted, MtldiagError, TrainingError

# `--help` lists commands in the order a user meets them, not alphabetically.
_COMMAND_ORDER = ("profile", "validate", "compare", "report", "check", "methods")


class _OrderedGroup(TyperGroup):
    def list_commands(self, ctx: Any) -> list[str]:
        names = super().list_commands(ctx)
        rank = {n: i for i, n in enumerate(_COMMAND_ORDER)}
        return sorted(names, key=lambda n: (rank.get(n, len(rank)), n))


app = typer.Typer(
    name="mtldiag",
    cls=_OrderedGroup,
    help="Diagnose why multi-task losses fight, and measure which balancing method fixes it.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    # Plain help: "[spec: profile.steps]" and "[default: ...]" print as written, never as markup.
    rich_markup_mode=None,
)

# Results go to stdout, progress and errors to stderr (so `--format json > f` stays clean).
console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

_state = {"debug": False}


def debug_enabled() -> bool:
    return _state["debug"] or os.environ.get("MTLDIAG_DEBUG") == "1"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"mtldiag {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
    version: bool = typer.Option(
        False,
        "--version",
        callback=_print_version,
        is_eager=True,
        help="Print the version and exit.",
    ),
) -> None:
    """Diagnose why multi-task losses fight, and measure which balancing method fixes it."""
    _state["debug"] = debug


def fail(message: str, hint: str | None = None, code: int = 2) -> typer.Exit:
    """Print one short error (and a hint) to stderr; return the Exit to raise."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    if hint:
        err_console.print(f"  [dim]hint:[/] {escape(hint)}", highlight=False, soft_wrap=True)
    return typer.Exit(code=code)


def guarded(fn: F) -> F:
    """Turn library errors into one message and an exit code (no traceback unless --debug)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        distributed.set_speaker(_speak)
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except MtldiagError as exc:
            # Under torchrun rank 0 alone prints; another rank's own error reaches it by store.
            # A non-finite global loss and Ctrl-C happen on every rank at once; a loader that
            # breaks on one rank must be told to the others (blocked in a collective).
            everywhere = isinstance(exc, Interrupted) or (
                isinstance(exc, TrainingError) and exc.everywhere
            )
            if not distributed.failure(exc.message, exc.hint, exc.exit_code, everywhere):
                raise typer.Exit(code=exc.exit_code) from None
            _traceback_if_debug()
            raise fail(exc.message, exc.hint, code=exc.exit_code) from None
        except KeyboardInterrupt:
            if not distributed.failure("interrupted (Ctrl-C).", None, 130, everywhere=True):
                raise typer.Exit(code=130) from None
            _traceback_if_debug()
            raise fail("interrupted (Ctrl-C).", code=130) from None
        except Exception as exc:
            # Not a domain error: a bug of ours. One line still, and the way to the traceback.
            message = f"internal error: {type(exc).__name__}: {exc}"
            if not distributed.failure(message, _BUG_HINT, 1):
                raise typer.Exit(code=1) from None
            _traceback_if_debug()
            raise fail(message, _BUG_HINT, code=1) from None
        finally:
            distributed.finish()

    return wrapper  # type: ignore[return-value]


_BUG_HINT = "this is a bug in mtldiag: rerun with --debug and report the traceback"


def _traceback_if_debug() -> None:
    """Under --debug, the traceback on stderr before the one-line error; the exit code is the
    one the error carries either way (a script testing for 2 sees 2 with --debug too)."""
    if debug_enabled():
        err_console.file.write(traceback.format_exc())


def _speak(message: str, hint: str | None, code: int) -> None:
    fail(message, hint, code)
