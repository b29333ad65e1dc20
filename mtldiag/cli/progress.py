"""Progress plugged into the trainer's observer callbacks: Rich bars, plain lines or nothing."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from mtldiag.engine.distributed import is_main


class RichObserver:
    """An overall bar (when there are several runs) and one bar for the current run."""

    def __init__(self, console: Console, total_runs: int = 1) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=console,
            transient=False,
            disable=not is_main(),  # under torchrun only rank 0 shows progress
        )
        self.total_runs = total_runs
        self.overall: TaskID | None = None
        self.current: TaskID | None = None
        # With --jobs N, runs go on side by side: one bar per worker slot, ``focus`` picks the
        # slot the next callback is about.
        self._bars: dict[int, tuple[TaskID | None, float, float]] = {}
        self._slot = 0
        self._t0 = 0.0
        self._last = 0.0

    def __enter__(self) -> RichObserver:
        self.progress.__enter__()
        if self.total_runs > 1:
            self.overall = self.progress.add_task(
                "all runs", total=self.total_runs, rate="", info=""
            )
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def set_total(self, runs: int) -> None:
        """Called by ``run_compare`` once it knows how many runs it plans."""
        self.total_runs = runs
        if self.overall is None and runs > 1:
            self.overall = self.progress.add_task("all runs", total=runs, rate="", info="")
        elif self.overall is not None:
            self.progress.update(self.overall, total=runs)

    def focus(self, slot: int) -> None:
        """The next callbacks come from worker ``slot`` (a parallel comparison)."""
        if slot == self._slot:
            return
        self._bars[self._slot] = (self.current, self._t0, self._last)
        self._slot = slot
        self.current, self._t0, self._last = self._bars.get(slot, (None, 0.0, 0.0))

    def run_started(self, label: str, seed: int, steps: int) -> None:
        if self.current is not None:
            self.progress.remove_task(self.current)
        # Labels and task names are the user's text: a task named 'c[/]' is not Rich markup.
        desc = escape(f"{label} (seed {seed})" if self.total_runs > 1 else label)
        self.current = self.progress.add_task(desc, total=steps, rate="", info="")
        self._t0 = self._last = time.perf_counter()

    def step_done(self, step: int, losses: dict[str, float]) -> None:
        assert self.current is not None
        now = time.perf_counter()
        if now - self._last < 0.1 and step > 0:  # redraw at most ~10 times a second
            self.progress.advance(self.current)
            return
        self._last = now
        rate = (step + 1) / max(now - self._t0, 1e-9)
        shown = [(t, v) for t, v in losses.items() if v is not None][:4]  # None: no labels
        info = escape("  ".join(f"{t}={v:.3g}" for t, v in shown))
        self.progress.update(self.current, advance=1, rate=f"{rate:.1f} steps/s", info=info)

    def run_finished(self, result: dict[str, Any]) -> None:
        if self.current is not None:
            status = result.get("status", "ok")
            if status != "ok":
                self.progress.update(self.current, info=f"[red]{escape(str(status))}[/]")
        if self.overall is not None:
            self.progress.advance(self.overall)


PLAIN_EVERY_S = 5.0  # a CI log gets a line at most this often: enough to show life


class PlainObserver:
    """Progress as plain lines when stderr is not a terminal (CI logs, pipes): one line per run
    start and end and, in between, one every :data:`PLAIN_EVERY_S` seconds."""

    def __init__(self, console: Console, every_s: float = PLAIN_EVERY_S) -> None:
        self.console = console
        self.every_s = every_s
        self.enabled = is_main()
        self.total_runs = 1
        self.done_runs = 0
        self._label = ""
        self._steps = 0
        self._t0 = self._last = 0.0

    def __enter__(self) -> PlainObserver:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def _say(self, text: str) -> None:
        if self.enabled:
            self.console.print(text, highlight=False, markup=False, soft_wrap=True)

    def set_total(self, runs: int) -> None:
        self.total_runs = runs

    def run_started(self, label: str, seed: int, steps: int) -> None:
        self._label = f"{label} (seed {seed})"
        if self.total_runs > 1:
            self._label = f"[{self.done_runs + 1}/{self.total_runs}] {self._label}"
        self._steps = steps
        self._t0 = self._last = time.perf_counter()
        self._say(f"{self._label}: {steps} steps")

    def step_done(self, step: int, losses: dict[str, float]) -> None:
        now = time.perf_counter()
        if now - self._last < self.every_s:
            return
        self._last = now
        rate = (step + 1) / max(now - self._t0, 1e-9)
        info = " ".join(f"{t}={v:.4g}" for t, v in list(losses.items())[:6])
        self._say(f"{self._label}: step {step + 1}/{self._steps}, {rate:.1f} steps/s, {info}")

    def run_finished(self, result: dict[str, Any]) -> None:
        self.done_runs += 1
        took = time.perf_counter() - self._t0
        status = result.get("status", "ok")
        label = self._label
        if "method" in result and "seed" in result:
            # Named from the result: with --jobs N the run that ends is not always the last
            # one started.
            label = f"{result['method']} (seed {result['seed']})"
            if self.total_runs > 1:
                label = f"[{self.done_runs}/{self.total_runs}] {label}"
        self._say(f"{label}: {status}, {result.get('steps', 0)} steps in {took:.1f} s")


class QuietObserver(PlainObserver):
    """``--quiet``: no progress at all."""

    def _say(self, text: str) -> None:
        pass


def make_observer(console: Console, quiet: bool = False) -> RichObserver | PlainObserver:
    """Rich bars on a terminal, plain lines in a log, nothing with ``--quiet``."""
    if quiet:
        return QuietObserver(console)
    if console.is_terminal:
        return RichObserver(console)
    return PlainObserver(console)
