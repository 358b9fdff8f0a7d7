"""A restarted supervisor adopts the stages its crashed predecessor left running.

The supervisor keeps `<run_dir>/stages.json` up to date: which process serves each stage, which
stands by as its spare, the route's worker and epoch, and a digest of the config. When it is
SIGKILLed (or OOM-killed) its stages outlive it for `supervisor.orphan_grace_s`
(pipeline/ownership.py); the next supervisor on the run dir adopts every recorded process that
still runs (same pid *and* same start time: a recycled pid is not ours) under the same config,
so a supervisor crash interrupts no utterance and no model has to load again. A process it does
not adopt is SIGKILLed; its work is in the durable state, which the replacement resumes.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import signal
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from pipeline import topology
from pipeline.durable import WriteHealth, atomic_write
from pipeline.exitcodes import EXIT_STATUS_UNKNOWN


def start_time(pid: int) -> int | None:
    """The process's start time (clock ticks since boot, /proc/<pid>/stat field 22); None when
    gone or a zombie. With the pid it names one process: pids are recycled, start times are not."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else int(fields[19])


@dataclass(frozen=True)
class Survivor:
    """A recorded process still running under the same config."""
    name: str
    pid: int
    standby: bool
    restarts: int


@dataclass(frozen=True)
class Record:
    supervisor_pid: int
    epoch: int
    active: str | None
    survivors: list[Survivor]


class StageRecord:
    """`stages.json`: written when what it says changes (a pass of the supervisor's loop compares)."""

    def __init__(self, run_dir: Path, snapshot: str) -> None:
        self.path = topology.stage_record(run_dir)
        self.digest = hashlib.sha256(snapshot.encode()).hexdigest()  # of the config the stages run under
        self._last: tuple | None = None
        self._health = WriteHealth(self.path.name)

    def save(self, epoch: int, active: str | None, processes: list[tuple[str, int, bool, int]]) -> None:
        """`processes`: (stage, pid, standby, restarts) of every live process."""
        key = (epoch, active, tuple(processes))
        if key == self._last:
            return
        entries = [{"name": n, "pid": pid, "start": start_time(pid), "standby": standby, "restarts": restarts}
                   for n, pid, standby, restarts in processes]
        data = {"supervisor_pid": os.getpid(), "config": self.digest, "epoch": epoch, "active": active,
                "processes": entries}
        try:
            atomic_write(self.path, json.dumps(data).encode())
        except OSError as err:  # counted and logged; a supervisor crash now adopts less (never loses state)
            self._health.failed(err)
            return
        self._health.succeeded()
        self._last = key

    def load(self) -> tuple[Record | None, list[int]]:
        """What the last supervisor left: its record, restricted to processes that still run under
        this config, and the pids of those that run but may not be adopted (another config)."""
        try:
            data = json.loads(self.path.read_text())
            entries = data["processes"]
        except (OSError, ValueError, KeyError, TypeError):
            return None, []  # none (a first start or a clean stop) or unreadable: nothing to adopt
        running = [e for e in entries if isinstance(e, dict) and isinstance(e.get("pid"), int)
                   and e.get("start") is not None and start_time(e["pid"]) == e["start"]]
        if data.get("config") != self.digest:
            return None, [e["pid"] for e in running]
        survivors = [Survivor(str(e["name"]), e["pid"], bool(e.get("standby")), int(e.get("restarts", 0)))
                     for e in running]
        return Record(int(data.get("supervisor_pid", 0)), int(data.get("epoch", 0)), data.get("active"), survivors), []

    def inherit(self, log) -> Record | None:
        """At start: what to adopt (None: nothing). Processes left under another config are SIGKILLed."""
        record, strangers = self.load()
        for pid in strangers:
            log.warning("stage_not_adopted", pid=pid, reason="the config changed since it started")
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass  # gone since it was checked
        return record if record and record.survivors else None


class AdoptedProcess:
    """The Popen calls the supervisor makes, for a process it did not spawn. It is not our child:
    its exit is seen through a pidfd (a thread waits on it and calls `on_exit`), its status is unknown."""

    def __init__(self, pid: int, on_exit: Callable[[], None]) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._fd: int | None = os.pidfd_open(pid)
        self._lock = threading.Lock()
        self._exited = threading.Event()
        threading.Thread(target=self._watch, args=(on_exit,), name=f"adopted-{pid}", daemon=True).start()

    def _watch(self, on_exit: Callable[[], None]) -> None:
        select.select([self._fd], [], [])  # a pidfd turns readable when the process exits
        with self._lock:
            os.close(self._fd)
            self._fd = None
        self._exited.set()
        on_exit()

    def poll(self) -> int | None:
        if self._exited.is_set():
            self.returncode = EXIT_STATUS_UNKNOWN
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._exited.wait(timeout):
            raise subprocess.TimeoutExpired(f"adopted pid {self.pid}", timeout)
        return self.poll()

    def send_signal(self, sig: int) -> None:
        with self._lock:  # through the pidfd: never to another process that got the pid since
            if self._fd is not None:
                signal.pidfd_send_signal(self._fd, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)
