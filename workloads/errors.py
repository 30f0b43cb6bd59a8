"""Expected failures, kept apart from bugs.

Every error a user can cause (an unknown name, a malformed file, a plan that does not fit) is an
``LLMSimError``: the CLI prints its message on one line and exits with status 2; library callers
catch the specific subclass. Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations


class LLMSimError(Exception):
    """Base of every user-facing error; the message names the problem and the fix."""

    exit_code = 2


class UnknownNameError(LLMSimError, KeyError):
    """A model, device, format, scheduler ... name that no catalogue knows."""

    def __init__(self, kind: str, name: str, suggestions: list[str] | tuple[str, ...] = ()):
        self.kind = kind
        self.name = name
        self.suggestions = tuple(suggestions)
        hint = f"; did you mean {', '.join(repr(s) for s in self.suggestions)}?" if self.suggestions else ""
        super().__init__(f"unknown {kind} {name!r}{hint}")

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class ConfigError(LLMSimError, ValueError):
    """A malformed config, catalogue entry or command-line value."""


class TraceError(LLMSimError, ValueError):
    """A malformed request trace or measurement file (names file, line and column)."""


class MissingDataError(LLMSimError, LookupError):
    """A prediction needs data or parameters that do not exist; raised instead of extrapolating."""


class PlanError(LLMSimError, ValueError):
    """An impossible parallel plan (degrees that do not divide, device counts that do not match);
    ``needed_devices`` / ``available_devices`` when the plan needs more devices than there are."""

    def __init__(self, message: str, *, needed_devices: int | None = None, available_devices: int | None = None):
        self.needed_devices = needed_devices
        self.available_devices = available_devices
        super().__init__(message)


class OutOfMemoryError(LLMSimError):
    """A deployment whose weights, activations and minimum KV cache do not fit in device memory."""

    def __init__(self, message: str, *, required_bytes: float, available_bytes: float):
        self.required_bytes = float(required_bytes)
        self.available_bytes = float(available_bytes)
        super().__init__(message)
