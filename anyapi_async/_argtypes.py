"""argparse value types shared by the CLI's subcommands."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

__all__ = ["int_in", "positive_float"]


def int_in(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type accepting integers from ``low`` (to ``high``, when given)."""
    wanted = f"an integer from {low} to {high}" if high is not None else f"an integer >= {low}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {value}")
        return value

    return parse


def positive_float(text: str) -> float:
    """An argparse type accepting a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text}")
    return value
