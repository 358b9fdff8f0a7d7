"""The private runtime dir: ours alone, one supervisor at a time, its state kept across a crash.

Sockets, the spool of pending utterances, the published ids and the capture cursor live there.
Without XDG_RUNTIME_DIR the default is a predictable /tmp/luxa-stt-<uid>, which another local
user could create first, or plant as a symlink; so an existing dir must be a real directory (lstat,
not followed), owned by us, mode 0700, or the supervisor refuses to start (exit 78). A lock file
(flock, released by the kernel even when the supervisor is SIGKILLed) refuses a second supervisor
on a live run dir, which would otherwise share its sockets and its state.

The state is cleared only after a clean stop that left nothing pending; after a crash (the
supervisor SIGKILLed or OOM-killed, then restarted by systemd) it is resumed: the VAD re-sends its
spooled utterances, the sink still knows what it published, a file source carries on.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import stat
from pathlib import Path

from pipeline import topology
from pipeline.config import PipelineConfig, write_snapshot
from pipeline.durable import Spool, clear_state

LOCK_NAME = "supervisor.lock"


class RunDirError(Exception):
    """The run dir cannot be used safely; the message says why and what to do."""


def check_private(run_dir: Path) -> None:
    """Create the run dir (0700) if missing; refuse one that is not a real, private dir of ours."""
    try:
        run_dir.mkdir(mode=0o700, parents=False)
        return
    except FileExistsError:
        pass
    except FileNotFoundError:
        run_dir.mkdir(mode=0o700, parents=True)  # a configured path whose parents do not exist yet
        return
    info = os.lstat(run_dir)
    if stat.S_ISLNK(info.st_mode):
        raise RunDirError(f"run dir {run_dir} is a symbolic link (to {os.readlink(run_dir)}); "
                          "refusing to put sockets and state where someone else may point it. "
                          "Remove it, or set run_dir in the config")
    if not stat.S_ISDIR(info.st_mode):
        raise RunDirError(f"run dir {run_dir} exists and is not a directory")
    if info.st_uid != os.getuid():
        raise RunDirError(f"run dir {run_dir} belongs to uid {info.st_uid}, not to us (uid {os.getuid()}); "
                          "another user may have created it first. Set run_dir (or XDG_RUNTIME_DIR) elsewhere")
    if stat.S_IMODE(info.st_mode) != 0o700:
        raise RunDirError(f"run dir {run_dir} has mode {stat.S_IMODE(info.st_mode):04o}, not 0700: others could "
                          f"read or plant files in it. Fix it with: chmod 700 {run_dir}")


class RunDirLock:
    """Held for the supervisor's life: a second supervisor on the same run dir is refused."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK_NAME
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            if err.errno in (errno.EAGAIN, errno.EACCES):
                raise RunDirError(f"another supervisor (pid {holder}) is running on run dir {run_dir}; "
                                  "stop it first, or give this one its own run_dir") from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None


def open_run_dir(cfg: PipelineConfig) -> tuple[Path, RunDirLock]:
    """Checked, locked, with the config snapshot; the stages' state is kept. Raises RunDirError
    when it is not safe to use."""
    run_dir = cfg.resolved_run_dir()
    check_private(run_dir)
    lock = RunDirLock(run_dir)
    write_snapshot(cfg, run_dir / "config.resolved.json")
    return run_dir, lock


def fresh_metrics_dir(run_dir: Path) -> None:
    """Metrics are per session: a start that adopted no process drops the dead pids' files. (One
    that adopted some carries the session on: their files are theirs.)"""
    shutil.rmtree(run_dir / "prom", ignore_errors=True)
    (run_dir / "prom").mkdir()


def leftover_state(run_dir: Path) -> dict[str, int]:
    """What a previous session left: spooled utterances (and an end-of-stream mark), published ids, cursor."""
    paths = topology.state_paths(run_dir)
    ids, cursor = paths[1:3]
    spools = [p for p in paths if p.name.partition(".")[0] == "vad_spool" and p.is_dir()]  # every lane's
    entries = [p.name.removesuffix(Spool.SUFFIX) for spool in spools for p in spool.glob(f"*{Spool.SUFFIX}")]
    return {"spooled": sum(key != topology.SPOOL_END_OF_STREAM for key in entries),
            "end_of_stream": int(topology.SPOOL_END_OF_STREAM in entries),
            "published_ids": sum(1 for _ in ids.open()) if ids.exists() else 0,
            "cursor": int(cursor.exists())}


def clear_after_clean_stop(run_dir: Path) -> bool:
    """After a clean stop: clear the state, unless utterances still wait in the spool (a drain that
    timed out); then all of it stays, and the next start sends them again. Returns whether it cleared."""
    if leftover_state(run_dir)["spooled"]:
        return False
    clear_state(topology.state_paths(run_dir))
    return True
