"""Whether a stage may go on serving: a live supervisor owns it.

A stage's supervisor is first its parent. When that parent dies (SIGKILL, the OOM killer), the
stage keeps serving (the utterance in progress, the route it has) for `orphan_grace_s`, time for
systemd to start the supervisor again, which adopts it (pipeline/adoption.py) and names it in
every Owned frame. From then on the adopter is watched through a pidfd, as the parent is through
getppid: a stage busy in a long model call reads no frames, yet must not take that for silence.
An orphan nobody adopts in that time, or one that a new supervisor does not name, exits: two
processes of one stage must never serve side by side.
"""

from __future__ import annotations

import os
import select
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
        self.orphaned_at: float | None = None  # since when no live supervisor owns us
        self.owner: int | None = None          # the supervisor that adopted us
        self._owner_fd: int | None = None      # its pidfd: readable once it exited

    @property
    def orphan(self) -> bool:
        return self.orphaned_at is not None or self._parent() != self._first_parent

    def on_owned(self, frame: frames.Owned) -> str | None:
        """A reason to exit now, or None. Our living parent's frames change nothing."""
        if not self.orphan or frame.supervisor_pid == self.owner:
            return None
        if os.getpid() not in frame.pids:
            return f"supervisor {frame.supervisor_pid} took over without this process"
        try:
            fd = os.pidfd_open(frame.supervisor_pid)
        except OSError:
            return None  # that supervisor is already gone: still an orphan
        self._forget_owner()
        self.owner, self._owner_fd, self.orphaned_at = frame.supervisor_pid, fd, None
        self._log.info("stage_adopted_by", supervisor_pid=frame.supervisor_pid)
        return None

    def exit_reason(self) -> str | None:
        """None while owned (by the parent, or by a live adopter) and during the grace after that."""
        if self.owner is not None and not select.select([self._owner_fd], [], [], 0)[0]:
            return None  # the adopter lives (a pidfd: a busy stage need not read its frames)
        if not self.orphan:
            return None
        now = self._clock()
        if self.orphaned_at is None:
            self.orphaned_at = now
            self._log.warning("supervisor_gone", supervisor_pid=self.owner or self._first_parent, grace_s=self._grace_s)
            self._forget_owner()
        if now - self.orphaned_at <= self._grace_s:
            return None
        return f"supervisor gone and no supervisor adopted this process within {self._grace_s:g} s"

    def _forget_owner(self) -> None:
        if self._owner_fd is not None:
            os.close(self._owner_fd)
        self.owner, self._owner_fd = None, None
