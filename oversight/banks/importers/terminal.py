"""What the management commands share: a progress counter for a terminal and running an import."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from django.core.management.base import CommandError

from .base import BankImportError, ImportResult, ProgressCallback

_LABELS = {"read": "Reading", "write": "Writing"}


class TerminalProgress:
    """A one-line counter on a terminal, redrawn at most ten times a second.

    Nothing is drawn when the stream is not a terminal: a log file or a CI job would fill with \\r lines.
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.last_draw = 0.0
        self.drawn = False

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self.last_draw < 0.1:
            return
        self.last_draw = now
        width = 30
        filled = width * done // total if total else width
        bar = "#" * filled + "." * (width - filled)
        self.stream.write(f"\r{_LABELS.get(stage, stage):8} [{bar}] {done:,}/{total:,}\x1b[K")
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()
        self.drawn = True


def terminal_progress(stream: TextIO | None = None) -> ProgressCallback | None:
    stream = stream or sys.stderr
    return TerminalProgress(stream) if stream.isatty() else None


def run_import(command, run: Callable[[ProgressCallback | None], ImportResult]) -> ImportResult:
    """Run an import for a management command: progress on a terminal, the summary on stdout, errors as
    CommandError (which Django prints to stderr and turns into exit status 1)."""
    started = time.monotonic()
    try:
        result = run(terminal_progress())
    except BankImportError as exc:
        raise CommandError(str(exc)) from exc
    for line in result.summary_lines():
        command.stdout.write(line)
    command.stdout.write(f"Done in {time.monotonic() - started:.1f} s")
    return result
