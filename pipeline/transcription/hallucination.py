"""Whisper invents text on silence and noise; decide whether a result is real speech.

Signals: the engine's no-speech probability and average log-probability per segment
(faster-whisper's own thresholds), plus per-language phrases Whisper is known to produce on
non-speech (subtitle credits learnt from its training data).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

KNOWN_PHRASES: dict[str, tuple[str, ...]] = {
    "fr": (
        "sous-titres réalisés par la communauté d'amara.org",
        "sous-titres réalisés para la communauté d'amara.org",
        "sous-titrage st' 501",
        "sous-titrage société radio-canada",
        "merci d'avoir regardé cette vidéo",
        "merci d'avoir regardé",
        "sous-titres par",
        "abonnez-vous",
        # Not « Merci. »: Whisper invents it on silence, but people say it to an assistant; the
        # no-speech signals above handle the invented ones.
    ),
    "en": (
        "thanks for watching",
        "thank you for watching",
        "subtitles by the amara.org community",
        "please subscribe",
    ),
}
_ANY_LANGUAGE = ("amara.org",)


@dataclass(frozen=True)
class SegmentSignal:
    """What the decoder says of one segment: its text and confidences."""
    text: str
    no_speech_prob: float
    avg_logprob: float


def normalise(text: str) -> str:
    """Lower case, accents kept, punctuation apart from apostrophes and hyphens removed."""
    text = unicodedata.normalize("NFC", text.lower().replace("’", "'"))
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s'\-.]", " ", text)).strip()


def non_speech_reason(segments: list[SegmentSignal], language: str, no_speech_threshold: float,
                      log_prob_threshold: float) -> str | None:
    """None when the result is speech, else why it is not (a metric label)."""
    kept = [segments[i] for i in speech_segments(segments, no_speech_threshold, log_prob_threshold)]
    text = normalise(" ".join(s.text for s in kept))
    if not text.strip(" .-'"):
        return "no_speech" if segments else "empty"
    if any(marker in text for marker in _ANY_LANGUAGE):
        return "known_hallucination"
    phrases = KNOWN_PHRASES.get(language, ())
    if any(text == normalise(p) or (len(p) > 12 and text.startswith(normalise(p))) for p in phrases):
        return "known_hallucination"
    return None


def speech_segments(segments: list[SegmentSignal], no_speech_threshold: float,
                    log_prob_threshold: float) -> list[int]:
    """Indexes of the segments kept as speech."""
    return [i for i, s in enumerate(segments)
            if not (s.no_speech_prob > no_speech_threshold and s.avg_logprob < log_prob_threshold)]
