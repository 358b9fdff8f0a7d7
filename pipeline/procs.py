"""Child processes of the supervisor: spawn, observe, stop with escalation (circus kill_process)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline.lifecycle import StageState

if TYPE_CHECKING:
    from pipeline.adoption import AdoptedProcess


@dataclass
class StageProcess:
    """One supervised stage and what the supervisor knows about it (monotonic times)."""
    name: str
    argv: list[str]
    popen: subprocess.Popen | AdoptedProcess | None = None
    state: StageState = StageState.DOWN  # from the last heartbeat; DOWN when not running
    spawned_at: float = 0.0
    last_heartbeat: float = 0.0
    busy_since_ns: int = 0
    restarts: int = 0
    start_at: float | None = 0.0   # when to (re)spawn; None = not scheduled
    failed: bool = False           # the policy gave up
    ready_reported: bool = False
    standby: bool = False          # a spare: spawned with --standby, serves only after Activate
    memory_check_at: float = 0.0   # when its resident memory is read next
    adopted: bool = False          # left running by a crashed supervisor (pipeline/adoption.py)

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def healthy(self) -> bool:
        return self.alive and self.state.serving

    def spawn(self, env: dict[str, str], now: float) -> None:
        args = [*self.argv, "--restart-count", str(self.restarts), *(["--standby"] if self.standby else [])]
        # Own session: a Ctrl-C in the terminal reaches only the supervisor, which then stops
        # the stages in order (capture first, so the utterance in flight can finish).
        self.popen = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, start_new_session=True)
        self.state, self.spawned_at, self.last_heartbeat, self.adopted = StageState.STARTING, now, now, False
        self.busy_since_ns, self.start_at, self.ready_reported = 0, None, False


def rss_mib(pid: int) -> float:
    """Resident memory of a process (MiB), from /proc; 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def stage_command(module: str, *extra: str) -> list[str]:
    """`python -m stages.<module>` so that ps and top show which process is which."""
    return [sys.executable, "-m", f"stages.{module}", *extra]


def child_env(prom_dir: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PROMETHEUS_MULTIPROC_DIR"] = prom_dir
    env["PYTHONUNBUFFERED"] = "1"
    return env


def stop_all(procs: list[StageProcess], timeout_s: float) -> None:
    """SIGTERM, wait up to timeout_s, then SIGKILL whatever is left; always reaps."""
    for proc in procs:
        if proc.alive:
            proc.popen.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for proc in procs:
        if proc.popen is None:
            continue
        try:
            proc.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.popen.kill()
            proc.popen.wait()
        proc.state = StageState.DOWN


def kill(proc: StageProcess) -> None:
    """For a hung stage: no grace, it already missed its heartbeats."""
    if proc.alive:
        proc.popen.kill()
        proc.popen.wait()


def child_exit_pipe() -> tuple[int, int]:
    """A pipe that turns readable when a signal (SIGCHLD: a stage died) arrives, for the poller:
    a death is handled at once instead of at the next 0.1 s tick. The write end is also written
    when an adopted process (not our child: no SIGCHLD) exits."""
    read_end, write_end = os.pipe()
    for fd in (read_end, write_end):
        os.set_blocking(fd, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so the wake-up fd is written
    signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    return read_end, write_end


def wake_up(write_end: int) -> None:
    try:
        os.write(write_end, b"\0")
    except BlockingIOError:
        pass  # full: a wake-up is already pending
