"""The CLI's error and exit statuses: the leaf every ``anyapi`` module imports."""

from __future__ import annotations

from typing import Final

__all__ = ["EXIT_ERROR", "EXIT_INTERRUPTED", "EXIT_STOPPED", "EXIT_USAGE", "CLIError"]

EXIT_ERROR: Final = 1
EXIT_USAGE: Final = 2
#: ``anyapi batch`` stopped early (endpoint down, key refused, output not writable).
EXIT_STOPPED: Final = 3
EXIT_INTERRUPTED: Final = 130


class CLIError(Exception):
    """A mistake of the user's to report on one line, with its exit status."""

    def __init__(self, message: str, status: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.status = status
