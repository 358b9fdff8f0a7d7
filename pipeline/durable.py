"""State that must outlive a SIGKILLed stage, kept as plain files in the private run dir.

A stage can die at any instant, so every write is either an atomic rename (`Spool`, `Cursor`)
or one `write()` on an O_APPEND descriptor (`IdLog`): the kernel keeps what was written even
when the process is killed right after. No fsync: this survives process crashes, not power cuts.
The supervisor keeps this state across its own crashes and clears it after a clean stop
(pipeline/rundir.py).
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from pathlib import Path


def clear_state(paths: tuple[Path, ...]) -> None:
    """After a clean stop that left nothing pending: the next session starts from nothing."""
    for path in paths:
        if path.is_dir():
            for child in path.iterdir():
                child.unlink(missing_ok=True)
        else:
            path.unlink(missing_ok=True)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


class Spool:
    """One file per key; what is still there after a crash is what was not yet acknowledged."""

    SUFFIX = ".msgpack"

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)

    def put(self, key: str, data: bytes) -> None:
        _atomic_write(self.dir / f"{key}{self.SUFFIX}", data)

    def remove(self, key: str) -> None:
        (self.dir / f"{key}{self.SUFFIX}").unlink(missing_ok=True)

    def load(self) -> list[tuple[str, bytes]]:
        """Everything spooled, oldest first (keys sort by creation within a session)."""
        files = sorted(self.dir.glob(f"*{self.SUFFIX}"), key=lambda p: (p.stat().st_mtime_ns, p.name))
        return [(p.name.removesuffix(self.SUFFIX), p.read_bytes()) for p in files]


class IdLog:
    """An append-only set of ids (one per line), bounded to the newest `limit` in memory."""

    def __init__(self, path: Path, limit: int) -> None:
        self.path = path
        self.limit = limit
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._lines = 0  # lines in the file, so it is rewritten before it grows past 2 x limit
        self._fd: int | None = None
        if path.exists():
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                self._remember(line.strip())
        self._compact()

    def __contains__(self, item: str) -> bool:
        return item in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, item: str) -> None:
        self._remember(item)
        os.write(self._fd, f"{item}\n".encode())
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
        _atomic_write(self.path, "".join(f"{i}\n" for i in self._ids).encode())
        self._lines = len(self._ids)
        self.close()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class Cursor:
    """A small JSON record (where a source is), replaced atomically on every save."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def save(self, data: dict) -> None:
        _atomic_write(self.path, json.dumps(data).encode())
