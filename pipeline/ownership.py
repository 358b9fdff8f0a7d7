"""Whether a stage may go on serving: a live supervisor owns it.

A stage's supervisor is first its parent. When that parent dies (SIGKILL, the OOM killer), the
stage keeps serving (the utterance in progress, the route it has) for `orphan_grace_s`, time for
systemd to start the supervisor again, which adopts it (pipeline/adoption.py) and names it in
every Owned frame. An orphan nobody adopts in that time, or one that a new supervisor does not
name, exits: two processes of one stage must never serve side by side.
"""

from __future__ import annotations

import os
import time
from typing import Callable

from pipeline import frames


class Ownership:
    """The runner asks `exit_reason()` at each heartbeat and hands it every Owned frame."""

    def __init__(self, grace_s: float, log, clock: Callable[[], float] = time.monotonic,
                 parent: Callable[[], int] = os.getppid) -> None:
        self._grace_s = grace_s
        self._log = log
        self._clock = clock
        self._parent = parent
        self._first_parent = parent()
        self.orphaned_at: float | None = None  # when the parent was first seen gone
        self.owner: int | None = None          # the supervisor that adopted us
        self._owned_at = 0.0

    @property
    def orphan(self) -> bool:
        return self.orphaned_at is not None or self._parent() != self._first_parent

    def on_owned(self, frame: frames.Owned) -> str | None:
        """A reason to exit now, or None. Our living parent's frames change nothing."""
        if not self.orphan:
            return None
        if os.getpid() not in frame.pids:
            return f"supervisor {frame.supervisor_pid} took over without this process"
        if self.owner != frame.supervisor_pid:
            self._log.info("stage_adopted_by", supervisor_pid=frame.supervisor_pid)
        self.owner, self._owned_at = frame.supervisor_pid, self._clock()
        return None

    def exit_reason(self) -> str | None:
        """None while owned: by the parent, by an adopter heard within the grace, or in the grace."""
        if not self.orphan:
            return None
        now = self._clock()
        if self.orphaned_at is None:
            self.orphaned_at = now
            self._log.warning("supervisor_gone", ppid=self._first_parent, grace_s=self._grace_s)
        if self.owner is not None:
            if now - self._owned_at <= self._grace_s:
                return None
            return f"no word from adopting supervisor {self.owner} for {self._grace_s:g} s"
        if now - self.orphaned_at <= self._grace_s:
            return None
        return f"supervisor gone and no supervisor adopted this process within {self._grace_s:g} s"
