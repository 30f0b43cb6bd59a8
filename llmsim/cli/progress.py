"""Progress lines and colour for the command line, on a terminal only.

A :class:`Bar` draws one self-overwriting line on stderr when stderr is a terminal and does
nothing otherwise (pipes, files, ``--json`` runs keep stdout and stderr free of it). Redraws are
throttled to ``min_interval_s`` of wall-clock time, which is display only and never reaches a
result. :func:`paint` colours text on a terminal unless ``NO_COLOR`` is set (https://no-color.org [S]).
"""
from __future__ import annotations

import os
import sys
import threading
import time

#: ANSI SGR codes of the colours used [S: ECMA-48]
COLOURS = {"red": "31", "yellow": "33", "green": "32", "dim": "2", "bold": "1"}


def is_terminal(stream) -> bool:
    """Whether ``stream`` is an interactive terminal."""
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def colour_enabled(stream=None) -> bool:
    """Colour only on a terminal and only when ``NO_COLOR`` is unset or empty."""
    stream = sys.stderr if stream is None else stream
    return is_terminal(stream) and not os.environ.get("NO_COLOR")


def paint(text: str, colour: str, stream=None) -> str:
    """``text`` in ``colour`` (a :data:`COLOURS` key) when :func:`colour_enabled`, else unchanged."""
    if not colour_enabled(stream):
        return text
    return f"\033[{COLOURS[colour]}m{text}\033[0m"


def prefix(command: str, kind: str, stream=None) -> str:
    """``simulate COMMAND: KIND:`` with the kind (``error``, ``warning``) coloured on a terminal."""
    colour = "red" if kind == "error" else "yellow"
    return f"simulate {command}: {paint(kind + ':', colour, stream)}"


class Bar:
    """One progress line on ``stream`` (default stderr), drawn only when it is a terminal.

    ``update(done, total=None, note="")``: ``done`` of ``total`` (a bar) or, without a total, a
    count; ``close()`` ends the line. ``enabled`` is false off a terminal: every call returns at once."""

    def __init__(self, label: str, *, total: float | None = None, unit: str = "", stream=None,
                 min_interval_s: float = 0.1, width: int = 30):
        self.stream = sys.stderr if stream is None else stream
        self.enabled = is_terminal(self.stream)
        self.label, self.total, self.unit, self.width = label, total, unit, width
        self.min_interval_s = min_interval_s
        self.updates = 0
        self._last = -1e18
        self._start = time.monotonic()
        self._drawn = False

    def update(self, done: float | None, total: float | None = None, note: str = "") -> None:
        if not self.enabled:
            return
        if total is not None:
            self.total = total
        now = time.monotonic()
        final = self.total is not None and done is not None and done >= self.total
        if now - self._last < self.min_interval_s and not final:
            return
        self._last = now
        self.updates += 1
        self._draw(done, note, now)

    def _draw(self, done: float | None, note: str, now: float) -> None:
        elapsed = f"{now - self._start:.0f} s"
        unit = f" {self.unit}" if self.unit else ""
        if done is None:
            body = "working"
        elif self.total:
            k = int(self.width * min(done / self.total, 1.0))
            body = f"[{'#' * k}{'.' * (self.width - k)}] {_num(done)}/{_num(self.total)}{unit}"
        else:
            body = f"{_num(done)}{unit}"
        line = f"{self.label}: {body}{'  ' + note if note else ''}  {paint(elapsed, 'dim', self.stream)}"
        self.stream.write("\r\033[K" + line)
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self.enabled and self._drawn:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self._drawn = False

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Ticker:
    """A :class:`Bar` without a measure of work: elapsed seconds redrawn by a daemon thread, for
    work that reports no progress of its own (``simulate validate``, ``size``). Off a terminal it
    starts no thread."""

    def __init__(self, label: str, *, stream=None, interval_s: float = 0.5):
        self.bar = Bar(label, stream=stream, min_interval_s=0.0)
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = None

    def __enter__(self) -> Ticker:
        if self.bar.enabled:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.bar.update(None)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.bar.close()


def run_bar(stream=None) -> Bar:
    """The bar of ``simulate run``: simulated seconds and iterations (the runner's progress hook)."""
    return Bar("simulate run", unit="s simulated", stream=stream)


def _num(x: float) -> str:
    return f"{x:,.0f}" if float(x).is_integer() or x >= 100 else f"{x:.1f}"
