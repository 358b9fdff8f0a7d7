"""The VAD's speculative copies: what was sent at this pause, and what the worker still has.

A copy is a beam-5 decode of everything said so far. A long utterance with many pauses used to
send one at every pause; none of them is preempted, so on two busy cores the final queued behind
all of them (bench.turns' long set: `queue_s` up to 18 s). At most one copy is now in the
worker's hands at a time: the next pause's copy waits until the previous one is answered (its
TurnHint, stale or not), the route changes, or `ANSWER_TIMEOUT_S` says it was lost.
"""

from __future__ import annotations

ANSWER_TIMEOUT_S = 10.0  # a copy unanswered this long is presumed lost (worker died with it)


class Speculation:
    """Pure bookkeeping, clock given by the caller (monotonic ns)."""

    def __init__(self) -> None:
        self.samples = 0  # length of the copy sent in this silence, 0 = none (the final's speculated_samples)
        self._in_flight: tuple[str, int, int] | None = None  # (utt_id, samples, sent_ns) not answered yet

    def may_send(self, now_ns: int) -> bool:
        """No copy sent in this silence yet, and none still waiting in the worker."""
        if self._in_flight is not None and now_ns - self._in_flight[2] > ANSWER_TIMEOUT_S * 1e9:
            self._in_flight = None
        return not self.samples and self._in_flight is None

    def sent(self, utt_id: str, samples: int, now_ns: int) -> None:
        self.samples = samples
        self._in_flight = (utt_id, samples, now_ns)

    def answered(self, utt_id: str, samples: int) -> bool:
        """A hint came back. True when it answers the copy of this silence (so it stands)."""
        if self._in_flight is not None and self._in_flight[:2] == (utt_id, samples):
            self._in_flight = None
        return bool(self.samples) and samples == self.samples

    def resumed(self) -> bool:
        """Speech came back: this silence's copy no longer stands. True if there was one."""
        had, self.samples = bool(self.samples), 0
        return had

    def closed(self) -> int:
        """The utterance closed: the samples its final may take from the copy (0 = none)."""
        samples, self.samples = self.samples, 0
        return samples

    def rerouted(self) -> None:
        """Another worker (or a restart of it): the copy it held is gone with it."""
        self._in_flight = None
