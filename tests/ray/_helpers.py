"""A stage that tells the test its actor's process id (to kill it)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from anyapi_async.ray import ChatCompletions


class PidReportingStage(ChatCompletions):
    """`ChatCompletions` that writes its actor's pid into ``pid_dir`` when it starts."""

    def __init__(self, *, pid_dir: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        Path(pid_dir, str(os.getpid())).touch()
