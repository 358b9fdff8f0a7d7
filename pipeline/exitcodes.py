"""Exit codes are a contract between stages and the supervisor (see STYLE.md section 4)."""

import enum


class ExitCode(enum.IntEnum):
    """What a stage's exit status tells the supervisor to do."""
    CLEAN = 0
    FAILURE = 1        # unexpected crash: restart with backoff
    GPU_UNAVAILABLE = 3  # permanent for that device: fail over to the CPU-model worker
    NO_GPU = 4         # no CUDA device at all (a CPU-only machine's normal case): the same, logged at info
    TRANSIENT = 75     # EX_TEMPFAIL: counts toward flapping
    CONFIG_ERROR = 78  # EX_CONFIG: never restart


EXIT_STATUS_UNKNOWN = -1000
"""The "return code" of a process the supervisor adopted: it is not our child, so its status is not ours to read."""


def describe(code: int | None) -> str:
    """Human name for a child's return code (negative = killed by a signal)."""
    if code is None:
        return "running"
    if code == EXIT_STATUS_UNKNOWN:
        return "exited_status_unknown"
    if code < 0:
        return f"signal_{-code}"
    try:
        return ExitCode(code).name.lower()
    except ValueError:
        return f"exit_{code}"
