"""What of an utterance still being spoken is already decoded, so that Whisper need not hear it again.

The VAD sends a speculative copy of the open utterance at every pause (`vad.speculate_after_ms` of
Silero's silence), and the worker decodes it at final quality. When speech resumes, the next copy
or the final holds that audio again plus more. If the stretch already decoded was long enough
(`transcribe.stretch_min_s`) and was speech, its text stands: only the audio after it is decoded,
with that text as Whisper's previous-text prompt, and the two are joined. The cut falls where Silero
heard silence, so no word is split, and a long utterance's final costs the decode of its last
stretch, not of all of it (bench.agreement: "pause cuts + tail"). The rest is decoded from where
that pause began, not from the cut: the two overlap on silence only, and Whisper hears the pause
before the next word. Offline (`bench.agreement --count 30 --min-s 5`, "live cuts"), 30 Debian
prompts of 5-20 s: whole decode 14.0 % WER, rest decoded from the cut 17.9 %, from the pause's
start 15.6 % (the 9 of 8 s or more: 12.3, 16.8, 13.5 %).

Memory only: a restarted worker, or the other worker after a failover, decodes the utterance whole.
Opt-in (`transcribe.stretch_min_s` is 0 by default): on the long set of bench.turns it was faster
but cost 5 points of WER (README, "Decoding while the person speaks").
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from dataclasses import dataclass

from pipeline.transcription.engine import Result

KEPT = 8  # open utterances remembered (one per source in practice)
MIN_TAIL_S = 0.5  # a shorter rest is decoded with what came before it: Whisper guesses at scraps


@dataclass(frozen=True)
class Stretch:
    """The first `samples` of an utterance (from its start, pre-roll included) and their text; the
    last `pause_samples` of them are the silence that the rest is decoded from."""
    samples: int
    text: str
    pause_samples: int = 0

    @property
    def tail_start(self) -> int:
        """Where the decode of the rest begins: the start of the pause."""
        return self.samples - min(self.pause_samples, self.samples)


class Stretches:
    """Per utterance id: the decoded stretch a later copy may start after, and the candidate that
    becomes it once speech resumes after its pause."""

    def __init__(self, min_samples: int, rate_hz: int) -> None:
        self._min_samples, self._min_tail = min_samples, int(MIN_TAIL_S * rate_hz)
        self._rate = rate_hz
        self._candidate: OrderedDict[str, Stretch] = OrderedDict()
        self._standing: OrderedDict[str, Stretch] = OrderedDict()

    def decoded(self, utt_id: str, samples: int, result: Result, pause_samples: int = 0) -> None:
        """A speculative copy of `samples`, the last `pause_samples` of them silence, was decoded to
        `result` (its whole text)."""
        base = self._standing.get(utt_id)
        if self._min_samples and result.is_speech and samples - (base.samples if base else 0) >= self._min_samples:
            _keep(self._candidate, utt_id, Stretch(samples, result.text, pause_samples))

    def before(self, utt_id: str, samples: int) -> Stretch | None:
        """The decoded stretch that a copy or final of `samples` can start after; None: decode it whole."""
        candidate = self._candidate.get(utt_id)
        if candidate is not None and candidate.samples <= samples - self._min_tail:
            del self._candidate[utt_id]  # speech resumed after its pause: it stands
            _keep(self._standing, utt_id, candidate)
        base = self._standing.get(utt_id)
        return base if base is not None and base.samples <= samples - self._min_tail else None

    def forget(self, utt_id: str) -> None:
        self._candidate.pop(utt_id, None)
        self._standing.pop(utt_id, None)

    def joined(self, base: Stretch, tail: Result) -> Result:
        """The whole utterance's answer: the stretch's text, then the tail's (its times shifted)."""
        offset_s = base.tail_start / self._rate
        head = {"start_s": 0.0, "end_s": round(offset_s, 2), "text": base.text}
        segments = [head] + [{**s, "start_s": s["start_s"] + offset_s, "end_s": s["end_s"] + offset_s}
                             for s in tail.segments]
        return dataclasses.replace(tail, text=" ".join(s["text"] for s in segments if s["text"]).strip(),
                                   segments=segments, non_speech_reason=None,
                                   audio_duration_s=tail.audio_duration_s + offset_s)


def _keep(table: OrderedDict[str, Stretch], utt_id: str, stretch: Stretch) -> None:
    table[utt_id] = stretch
    table.move_to_end(utt_id)
    while len(table) > KEPT:
        table.popitem(last=False)
