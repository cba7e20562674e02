"""The package version: a leaf module, read by hatch at build time and by the client."""

from __future__ import annotations

__version__ = "0.1.0"
