"""Plain records of what a job run and a tool call did (carried by errors, returned by runners).

A leaf: `anyapi_async._exceptions` names these types, so they live below it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["JobSummary", "ToolCallResult"]


class JobSummary:
    """What a `run_jsonl_job` call did.

    ``succeeded`` and ``failed`` count the items run this time (``failed`` includes
    ``invalid`` lines); ``skipped`` the items already in the output, ``skipped_failed`` of
    which had failed. ``retried`` counts the failed results removed to run again
    (``retry_failed``), ``repaired`` the bytes of a torn last line cut off. `ok` is true
    when the whole output is free of errors.
    """

    __slots__ = (
        "elapsed",
        "failed",
        "invalid",
        "output_path",
        "repaired",
        "retried",
        "skipped",
        "skipped_failed",
        "succeeded",
    )

    def __init__(self, output_path: Path) -> None:
        self.output_path = output_path
        self.succeeded = 0
        self.failed = 0
        self.invalid = 0
        self.skipped = 0
        self.skipped_failed = 0
        self.retried = 0
        self.repaired = 0
        self.elapsed = 0.0

    @property
    def ok(self) -> bool:
        """No item of the job failed, in this run or an earlier one."""
        return self.failed == 0 and self.skipped_failed == 0

    def __str__(self) -> str:
        text = (
            f"{self.succeeded} succeeded, {self.failed} failed, "
            f"{self.skipped} skipped as already done"
        )
        if self.skipped_failed:
            text += f" ({self.skipped_failed} of them had failed)"
        return text

    def __repr__(self) -> str:
        return (
            f"JobSummary(succeeded={self.succeeded}, failed={self.failed}, "
            f"invalid={self.invalid}, skipped={self.skipped}, "
            f"skipped_failed={self.skipped_failed}, retried={self.retried}, "
            f"output_path={str(self.output_path)!r})"
        )


class ToolCallResult:
    """One tool call the runner executed: what the model asked and what it got back.

    ``error`` is set (and ``output`` is the message the model saw) when the arguments did
    not validate, the tool raised or timed out, or no tool had that name.
    """

    __slots__ = ("arguments", "duration", "error", "id", "name", "output", "round", "value")

    def __init__(
        self,
        *,
        id: str,
        name: str,
        arguments: str,
        output: str,
        value: Any = None,
        error: str | None = None,
        duration: float = 0.0,
        round: int = 0,
    ) -> None:
        self.id = id
        self.name = name
        self.arguments = arguments
        self.output = output
        self.value = value
        self.error = error
        self.duration = duration
        self.round = round

    @property
    def ok(self) -> bool:
        return self.error is None

    def __repr__(self) -> str:
        status = "ok" if self.error is None else f"error={self.error!r}"
        return f"ToolCallResult({self.name}({self.arguments}), {status}, round={self.round})"
