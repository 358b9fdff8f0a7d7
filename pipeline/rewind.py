"""A file source's replay that survives capture's own restart: where each recent chunk number starts.

Capture keeps the last `audio.replay_s` of what it sent in memory, which dies with it; a file can
simply be read again. Every CHECKPOINT_EVERY chunks capture notes (next chunk number, file
position), and saves the notes with its cursor. A restarted capture rewinds to the newest note at
or before the VAD's committed offset, so the chunks that died in its predecessor's send queue are
read again under their own numbers (the VAD drops the ones it had already heard); a VAD restarted
after capture asks for a replay that capture answers by rewinding too.
"""

from __future__ import annotations

from collections import deque

CHECKPOINT_EVERY = 16  # chunks (~0.5 s)


class Checkpoints:
    """(chunk number, file position) notes, newest last, bounded."""

    def __init__(self, keep: int, saved: list | None = None) -> None:
        self._points: deque[tuple[int, dict]] = deque(maxlen=max(1, keep))
        for entry in saved or []:
            if isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], int) and isinstance(entry[1], dict):
                self._points.append((entry[0], entry[1]))

    def note(self, next_seq: int, position: dict) -> None:
        """The chunk numbered `next_seq` is read from `position` (taken before reading it)."""
        if not self._points or next_seq - self._points[-1][0] >= CHECKPOINT_EVERY:
            self._points.append((next_seq, position))

    def at_or_before(self, seq: int) -> tuple[int, dict] | None:
        return next((p for p in reversed(self._points) if p[0] <= seq), None)

    def forget_from(self, seq: int) -> None:
        """After a rewind to `seq`: the notes past it are taken again as the audio is read again."""
        while self._points and self._points[-1][0] > seq:
            self._points.pop()

    def saved(self) -> list:
        return [[seq, position] for seq, position in self._points]
