"""A stage's lifecycle states, and the two ways a stage says it cannot go on.

Pure and dependency-free: the runner reports the states, the supervisor parses them once from
each heartbeat, and `pipeline.policy` decides from them.
"""

from __future__ import annotations

import enum

from pipeline.exitcodes import ExitCode


class StageState(enum.Enum):
    """STARTING -> (STANDBY, for a spare) -> READY -> RUNNING -> DRAINING -> STOPPED."""
    STARTING = "starting"
    STANDBY = "standby"  # a spare: preloaded, no stage sockets open, waiting for Activate
    READY = "ready"
    RUNNING = "running"
    DRAINING = "draining"
    STOPPED = "stopped"
    DOWN = "down"  # the supervisor's view only: no live process (never in a heartbeat)

    @property
    def serving(self) -> bool:
        return self in (StageState.READY, StageState.RUNNING)


class StageStartError(Exception):
    """The stage cannot start; `exit_code` tells the supervisor whether to retry."""

    def __init__(self, message: str, exit_code: ExitCode = ExitCode.TRANSIENT) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class StageFailed(Exception):
    """Raised by a stage's hook when it cannot go on (no model answers): the runner stops the
    stage cleanly and exits with `exit_code`, so the supervisor can decide (restart, fail over)."""

    def __init__(self, message: str, exit_code: ExitCode = ExitCode.TRANSIENT) -> None:
        super().__init__(message)
        self.exit_code = exit_code
