"""Frame recordings: a stream of msgpack `[port, [parts...]]` records, for --record/--replay."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import msgpack

from pipeline import frames


class RecordWriter:
    """Appends `(port, parts)` records: what `--record` saves and `--replay` reads."""
    def __init__(self, path: Path) -> None:
        self._file = open(path, "wb")

    def write(self, port: str, parts: list[bytes]) -> None:
        self._file.write(msgpack.packb([port, [bytes(p) for p in parts]], use_bin_type=True))
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class RecordReader:
    """Iterates `(port, parts)`; a truncated tail (crash while recording) ends the stream."""

    def __init__(self, path: Path) -> None:
        self._path = path

    def __iter__(self) -> Iterator[tuple[str, list[bytes]]]:
        with open(self._path, "rb") as f:
            unpacker = msgpack.Unpacker(f, raw=False, max_buffer_size=frames.MAX_BUFFER_BYTES * 2)
            for record in unpacker:
                port, parts = record
                yield port, list(parts)


def read_frames(path: Path) -> list[tuple[str, frames.Frame]]:
    """Decode every record (tests and tools)."""
    return [(port, frames.decode(parts)) for port, parts in RecordReader(path)]
