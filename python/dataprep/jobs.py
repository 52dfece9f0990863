"""Running a long Rust job from the CLI: the job runs on a worker thread (the GIL is released
inside it), the main thread renders its progress with rich and turns Ctrl-C into a cancel."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.text import Text

from dataprep import _core

T = TypeVar("T")

# Phases whose units are bytes get a transfer-speed column; the rest count items.
BYTE_PHASES = {"reading", "evaluating", "rereading", "writing"}


def progress_bar(console: Console) -> Progress:
    """The progress display of every job: one bar per phase (its tasks need a `rate` field);
    nothing when `console` is not a terminal."""
    columns = (
        TextColumn("[bold]{task.description:<11}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    return Progress(*columns, console=console, transient=True, disable=not console.is_terminal)


def run_job(
    console: Console,
    job: Callable[[_core.Progress], T],
    bars: Callable[[Progress], None] | None = None,
    on_interrupt: Callable[[], None] | None = None,
) -> T:
    """Runs `job(progress)` on a thread while showing its progress; re-raises its exception.
    `bars(bar)`: adds the caller's own bars to the display (the job updates them); Ctrl-C
    cancels the job's `progress` and calls `on_interrupt` (for a job that also waits on
    something else than the core)."""
    handle = _core.Progress()
    value: list[T] = []  # what the job returned, or
    error: list[BaseException] = []  # what it raised

    def target() -> None:
        try:
            value.append(job(handle))
        except BaseException as e:
            error.append(e)

    thread = threading.Thread(target=target, daemon=True)
    with progress_bar(console) as bar:
        if bars is not None:
            bars(bar)  # before the job starts: it updates them
        thread.start()
        tasks: dict[str, Any] = {}
        speed = TransferSpeedColumn()
        try:
            while thread.is_alive():
                thread.join(0.1)
                phase, done, total, docs, tokens = handle.snapshot()
                if not phase:
                    continue
                if phase not in tasks:
                    for t in tasks.values():
                        bar.update(t, completed=bar.tasks[t].total or 0)
                    tasks[phase] = bar.add_task(phase, total=total or None, rate="")
                task = tasks[phase]
                bar.update(task, completed=done, total=total or None)
                rate = ""
                if phase in BYTE_PHASES:
                    rate = f"{speed.render(bar.tasks[task])} {docs:,} docs"
                    elapsed = bar.tasks[task].elapsed or 0
                    if tokens and elapsed > 0:
                        rate += f" {tokens / elapsed / 1e6:.1f}M tok/s"
                bar.update(task, rate=rate)
        except KeyboardInterrupt:
            handle.cancel()
            if on_interrupt is not None:
                on_interrupt()
            thread.join()
            raise
    # A failed job says one line, its error: notes describe a result there is not.
    if error:
        raise error[0]
    for note in handle.notes():
        console.print(Text.assemble(("note: ", "bold yellow"), note), soft_wrap=True)
    return value[0]
