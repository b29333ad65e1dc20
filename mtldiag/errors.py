"""Domain errors. The library raises them; the CLI turns each into one line and an exit code."""

from __future__ import annotations


class MtldiagError(Exception):
    """Bad input from the user (spec, arguments, their code): the CLI exits with code 2.

    ``message`` names the problem; ``hint`` says how to fix it (printed as a second line).
    """

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class SpecError(MtldiagError):
    """The spec file is missing, malformed or inconsistent."""


class UserCodeError(MtldiagError):
    """A user callable (factory, loss, eval) could not be imported, raised, or returned junk."""


class TrainingError(MtldiagError):
    """Training stopped: a NaN/Inf loss, a diverging method. Records so far are kept."""

    exit_code = 1
    # Under torchrun: True when every rank raises it at the same step (a non-finite *global*
    # loss), so no rank need tell the others; False when this rank may have failed alone (its
    # loader, its batch), so the others, blocked in a collective, must be told and stopped.
    everywhere = False


class RecordsError(MtldiagError):
    """The run directory cannot be written any more (a full disk, a folder removed): the run
    stops; the rows already written are whole and ``mtldiag report`` rebuilds from them."""

    exit_code = 1


class Interrupted(MtldiagError):
    """Ctrl-C during a run; the records so far are kept."""

    exit_code = 130


def did_you_mean(word: str, choices: list[str] | tuple[str, ...]) -> str:
    """`` Did you mean 'x'?`` for the closest choice, or an empty string."""
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f" Did you mean '{close[0]}'?" if close else ""
