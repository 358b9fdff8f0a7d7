"""What the sink published, numbered and kept on disk, so a subscriber can catch up on what it missed.

PUB/SUB drops every message sent while a subscriber is not connected: a LUXA process that
reconnects after a supervisor restart (a new sink, a new socket) has missed whatever was published
in the meantime. The ZeroMQ guide's Clone pattern answers this with numbered updates and a way to
fetch the ones missed. Here each final gets `pub_seq` (1, 2, ... within one `history`: a new
history begins after a clean stop clears the run dir) and is appended to `<run_dir>/history.bin`
*before* it is published; every heartbeat the sink also publishes `History(history, pub_seq)` on
`transcript.history`, so a subscriber also learns of a miss when nothing else follows it.
`CatchUp` (below) turns what a subscriber receives into every final, in order, exactly once.

File format (README, "Catching up"): records of a 4-byte big-endian length, then the msgpack
header map of the `transcript` message as published (no buffers). Appends are one `write()` on an
O_APPEND descriptor: a reader may see a last record cut short (it stops there and reads it later);
a SIGKILLed sink leaves only whole records or a cut last one, which loading drops. Bounded to the
newest `HISTORY_KEPT` finals (rewritten atomically past twice that).
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import struct
from pathlib import Path

from pipeline import frames
from pipeline.durable import WriteHealth, rewrite_for_appends

HISTORY_KEPT = 1000  # finals a late subscriber can still catch up on
_LENGTH = struct.Struct(">I")


def _record(transcript: frames.Transcript) -> bytes:
    header = frames.encode(transcript, "sink")[1]
    return _LENGTH.pack(len(header)) + header


def read(path: Path) -> list[frames.Transcript]:
    """Every whole, readable record; a cut or corrupt one ends the read (what follows is unknowable)."""
    try:
        data = path.read_bytes()
    except OSError:
        return []
    out, at = [], 0
    while at + _LENGTH.size <= len(data):
        (size,) = _LENGTH.unpack_from(data, at)
        header = data[at + _LENGTH.size: at + _LENGTH.size + size]
        if len(header) < size:
            break
        try:
            frame = frames.decode([b"transcript", header])
        except frames.FrameDecodeError:
            break
        if isinstance(frame, frames.Transcript):
            out.append(frame)
        at += _LENGTH.size + size
    return out


class TranscriptHistory:
    """The sink's side: numbers each final and appends it before it is published."""

    def __init__(self, path: Path, kept: int = HISTORY_KEPT) -> None:
        self.path, self.kept = path, kept
        self.health = WriteHealth(path.name)
        self.entries = read(path)[-kept:]
        self.id = self.entries[-1].history if self.entries else secrets.token_hex(6)
        self.last_seq = self.entries[-1].pub_seq if self.entries else 0
        self._fd: int | None = None
        self._rewrite()

    def numbered(self, transcript: frames.Transcript) -> frames.Transcript:
        """The next number, appended to the file: from here on it counts as published."""
        self.last_seq += 1
        entry = dataclasses.replace(transcript, history=self.id, pub_seq=self.last_seq)
        self.entries.append(entry)
        if self._fd is None or len(self.entries) > 2 * self.kept:
            self._rewrite()
        else:
            try:
                os.write(self._fd, _record(entry))
            except OSError as err:
                self.health.failed(err)
                self.close()
        return entry

    def _rewrite(self) -> None:
        self.close()
        self.entries = self.entries[-self.kept:]
        self._fd = rewrite_for_appends(self.path, b"".join(_record(e) for e in self.entries), self.health)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class CatchUp:
    """A subscriber's side: feed it every final and `History` received; it gives back the finals
    to deliver, missed ones first (read from the file), none twice. `from_start`: the first history
    heard is delivered from its first final (a subscriber started with the pipeline); otherwise
    from the first final heard (a subscriber that wants only what is new)."""

    def __init__(self, path: Path, from_start: bool = False) -> None:
        self.path, self.from_start = path, from_start
        self.history: str | None = None
        self.last_seq = 0
        self.filled = 0  # finals recovered from the file, not heard on the socket

    def receive(self, frame: frames.Frame) -> list[frames.Transcript]:
        if isinstance(frame, frames.Transcript) and not frame.is_partial:
            if not frame.pub_seq:  # a sink that does not number its finals
                return [frame]
            return self._up_to(frame.history, frame.pub_seq, frame)
        if isinstance(frame, frames.History):
            return self._up_to(frame.history, frame.pub_seq, None)
        return []

    def _up_to(self, history: str, seq: int, heard: frames.Transcript | None) -> list[frames.Transcript]:
        if history != self.history:  # the first one heard, or a new history after a clean stop
            first = self.history is None
            self.history = history
            self.last_seq = seq - (heard is not None) if first and not self.from_start else 0
        if seq <= self.last_seq:
            return []
        end = seq if heard else seq + 1  # what the file must fill: up to the final heard, or the beacon's number
        missed = []
        if end - 1 > self.last_seq:
            missed = [t for t in read(self.path) if t.history == history and self.last_seq < t.pub_seq < end]
            self.filled += len(missed)
        out = missed + ([heard] if heard else [])
        self.last_seq = max([self.last_seq] + [t.pub_seq for t in out])
        return out
