"""The VAD's committed offset: the capture chunk from which a restarted VAD must hear the audio again.

Kafka's consumer offset: everything before it is accounted for (in a closed, spooled utterance, or
silence), so a restarted VAD asks capture to replay from it (capture keeps `audio.replay_s`) and
rebuilds the utterance that was open when its predecessor died. While an utterance is open the
offset is the chunk its pre-roll starts in; between utterances, the chunk `pre_roll_ms` back. It
is written at most every COMMIT_EVERY_SAMPLES of audio (~5 s, however long its chunks: a quiet
microphone's come in bursts), and at once after every close (an older offset only
replays more silence: between closes the file is not rewritten twice a second); an utterance spooled
in the instant before that write carries its own `end_seq`, so the restart also starts after it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from pathlib import Path

from pipeline.durable import Cursor

COMMIT_EVERY_SAMPLES = 160 * 512  # ~5 s at 16 kHz: a commit is one small atomic file write (~0.3 ms: a rename)


class ReplayOffset:
    """Maps the segmenter's sample positions to capture chunk numbers, and commits the offset."""

    def __init__(self, path: Path, keep_chunks: int) -> None:
        self._cursor = Cursor(path)
        self._chunks: deque[tuple[int, int]] = deque(maxlen=max(1, keep_chunks))  # (seq, position after it)
        self._committed: int | None = None
        self._commit_position = 0  # the segmenter's position at the last commit
        self.awaiting: int | None = None  # the chunk asked for again, until capture's ReplayStart comes

    def restore(self, spooled_end_seqs: Iterable[int]) -> int | None:
        """At start: where to replay from (None: a new session, nothing to ask for)."""
        saved = self._cursor.load() or {}
        candidates = [int(saved["seq"])] if isinstance(saved.get("seq"), int) else []
        candidates += [seq + 1 for seq in spooled_end_seqs if seq]
        self.awaiting = max(candidates, default=None)
        return self.awaiting

    def seen(self, seq: int, position: int) -> None:
        """Chunk `seq` has been fed to the segmenter, which is now at sample `position`."""
        self._chunks.append((seq, position))

    def commit(self, sample: int, now: bool = False) -> None:
        """Everything before segmenter sample `sample` is accounted for."""
        if not self._chunks or (not now and self._committed is not None
                                 and self._chunks[-1][1] - self._commit_position < COMMIT_EVERY_SAMPLES):
            return  # the first commit at once: a VAD killed in its first seconds is replayed too
        seq = next((s for s, end in self._chunks if end > sample), self._chunks[-1][0] + 1)
        self.commit_seq(seq)

    def commit_seq(self, seq: int) -> None:
        """Everything before chunk `seq` is accounted for."""
        self._commit_position = self._chunks[-1][1] if self._chunks else 0
        if seq != self._committed and self._cursor.save({"seq": seq}):
            self._committed = seq
