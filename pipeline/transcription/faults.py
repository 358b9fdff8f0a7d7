"""Fault injection for tests (`transcribe.inject_fault`): a model call that hangs or raises.

So that an endless model call is tested at the process level (the supervisor sees the worker
busy past `supervisor.max_busy_s`, kills it, and the VAD re-sends the utterance), and a model
that raises goes through the engine's real failure path. It fires once per run dir: a marker file
created with O_EXCL tells every later worker (the replacement, its spare) not to fire again.
Off by default; the config refuses it unless LUXA_ALLOW_FAULT_INJECTION=1.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from pipeline.logs import get_logger

MARKER = "fault_injected"


class InjectedFault(RuntimeError):
    """The model failure `transcribe.inject_fault: raise` asked for."""


class FaultInjector:
    """Called by the engine before a final-quality model call."""

    def __init__(self, kind: str, run_dir: Path) -> None:
        self.kind = kind
        self.marker = run_dir / MARKER

    def __call__(self) -> None:
        try:
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            return  # fired already in this run dir
        get_logger().warning("fault_injected", kind=self.kind)
        if self.kind == "hang":
            threading.Event().wait()  # forever: only a SIGKILL ends this call
        raise InjectedFault("transcribe.inject_fault: raise")
