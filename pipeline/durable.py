"""State that must outlive a SIGKILLed stage, kept as plain files in the private run dir.

A stage can die at any instant, so every write is either an atomic rename (`Spool`, `Cursor`)
or one `write()` on an O_APPEND descriptor (`IdLog`): the kernel keeps what was written even
when the process is killed right after. No fsync: this survives process crashes, not power cuts.
The supervisor keeps this state across its own crashes and clears it after a clean stop
(pipeline/rundir.py).

A write that fails (disk full, the run dir read-only or deleted) never stops a stage: the
stage goes on with its state in memory, so nothing is lost while it lives; only what a crash of
it would have kept is at risk until writes work again. Every failure is counted
(`stt_state_write_errors_total{store}`); the first of a run of failures and the recovery are logged.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from pathlib import Path


class WriteHealth:
    """One store's failed writes: every one counted, the first and the recovery logged once."""

    def __init__(self, store: str) -> None:
        self.store = store
        self.failing = False

    def failed(self, err: OSError) -> None:
        from pipeline import metrics  # not at import: the supervisor imports this before choosing its metrics dir
        from pipeline.logs import get_logger

        metrics.STATE_WRITE_ERRORS.labels(self.store).inc()
        if not self.failing:
            self.failing = True
            get_logger().error("state_write_failed", store=self.store, error=f"{type(err).__name__}: {err}",
                               consequence="kept in memory only: a crash of this stage now loses it")

    def succeeded(self) -> None:
        if self.failing:
            from pipeline.logs import get_logger

            self.failing = False
            get_logger().info("state_write_recovered", store=self.store)


def clear_state(paths: tuple[Path, ...]) -> None:
    """After a clean stop that left nothing pending: the next session starts from nothing."""
    for path in paths:
        if path.is_dir():
            for child in path.iterdir():
                child.unlink(missing_ok=True)
        else:
            path.unlink(missing_ok=True)


def atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def rewrite_for_appends(path: Path, data: bytes, health: WriteHealth) -> int | None:
    """Replace the file atomically, then open the new one for O_APPEND writes (a descriptor opened
    before the rename would write to the old, unlinked file). None when it failed (counted, logged)."""
    try:
        atomic_write(path, data)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    except OSError as err:
        health.failed(err)
        return None
    health.succeeded()
    return fd


class Spool:
    """One file per key; what is still there after a crash is what was not yet acknowledged."""

    SUFFIX = ".msgpack"

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.health = WriteHealth(directory.name)
        self._write(lambda: None)  # makes the directory, or counts why it cannot

    def put(self, key: str, data: bytes) -> bool:
        """False when it could not be written (counted, logged): the caller keeps it in memory."""
        return self._write(lambda: atomic_write(self.dir / f"{key}{self.SUFFIX}", data))

    def remove(self, key: str) -> bool:
        return self._write(lambda: (self.dir / f"{key}{self.SUFFIX}").unlink(missing_ok=True))

    def _write(self, step) -> bool:
        try:
            if not self.dir.is_dir():  # missing, or deleted while running: made again (never its parents)
                self.dir.mkdir(mode=0o700, exist_ok=True)
            step()
        except OSError as err:
            self.health.failed(err)
            return False
        self.health.succeeded()
        return True

    def load(self) -> list[tuple[str, bytes]]:
        """Everything spooled, oldest first (keys sort by creation within a session); an entry that
        vanished or cannot be read while loading is skipped (the caller counts what it cannot decode)."""
        try:
            files = sorted(self.dir.glob(f"*{self.SUFFIX}"), key=lambda p: (p.stat().st_mtime_ns, p.name))
        except OSError:
            return []
        entries = []
        for path in files:
            try:
                entries.append((path.name.removesuffix(self.SUFFIX), path.read_bytes()))
            except OSError:
                continue
        return entries


class IdLog:
    """An append-only set of ids (one per line), bounded to the newest `limit` in memory."""

    def __init__(self, path: Path, limit: int) -> None:
        self.path = path
        self.limit = limit
        self.health = WriteHealth(path.name)
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._lines = 0  # lines in the file, so it is rewritten before it grows past 2 x limit
        self._fd: int | None = None
        try:
            text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
        except OSError:
            text = ""
        for line in text.splitlines():
            self._remember(line.strip())
        self._compact()

    def __contains__(self, item: str) -> bool:
        return item in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, item: str) -> None:
        self._remember(item)
        if self._fd is None:
            self._compact()  # the last write failed: try to get the file back, with every id we hold
            return
        try:
            os.write(self._fd, f"{item}\n".encode())
        except OSError as err:
            self.health.failed(err)
            self.close()
            return
        self._lines += 1
        if self._lines > 2 * self.limit:
            self._compact()

    def _remember(self, item: str) -> None:
        if item:
            self._ids[item] = None
            if len(self._ids) > self.limit:
                self._ids.popitem(last=False)

    def _compact(self) -> None:
        # The rename swaps the file under our O_APPEND descriptor: reopen on the new one.
        self.close()
        self._fd = rewrite_for_appends(self.path, "".join(f"{i}\n" for i in self._ids).encode(), self.health)
        if self._fd is not None:
            self._lines = len(self._ids)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class Cursor:
    """A small JSON record (where a source is), replaced atomically on every save."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.health = WriteHealth(path.name)

    def load(self) -> dict | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def save(self, data: dict) -> bool:
        try:
            atomic_write(self.path, json.dumps(data).encode())
        except OSError as err:
            self.health.failed(err)
            return False
        self.health.succeeded()
        return True
