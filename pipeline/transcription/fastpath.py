"""Short-window decoding: encode the utterance plus a little padding, not Whisper's 30 s window.

faster-whisper always pads to 30 s, so the encoder costs ~0.8 s on two cores whatever the length;
CTranslate2's encoder accepts shorter inputs (~0.1 s for a few seconds of audio). Trimmed windows
make Whisper run on past the audio, so decoding keeps timestamps, stops at the first timestamp at
the audio's end, and a guard rejects what still looks wrong (no closing timestamp, repetition, low
confidence); the caller then redoes the utterance the standard way (or drops a partial).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import numpy as np

RATE_HZ = 16000
FRAMES_PER_S = 100
BUCKETS_S = (4, 6, 8, 10, 12, 15, 20, 30)  # few distinct shapes; 4 s minimum: shorter windows lose words
PAD_S = 2.0  # silence after the audio: with less, Whisper guesses the end of short sentences
TOKENS_PER_S = 10  # French speech is ~6 tokens/s; more than this is a runaway decode
MIN_AVG_LOGPROB = -1.0
SENTENCE_ENDS = (".", "!", "?", "…")
PROMPT_TOKENS = 223  # Whisper's own limit on previous text (half the text context, less one)
MIN_UNCLOSED_LOGPROB = -0.3  # 160 prompts: good unclosed texts scored -0.08 to -0.27, wrong ones -0.43, -0.73


@dataclass(frozen=True)
class FastResult:
    """A short-window decode and, when the guard refused it, why."""
    text: str
    avg_logprob: float
    no_speech_prob: float
    rejected: str | None  # why the guard refused it, None when it is good
    end_probability: float = -1.0  # P(the closing . ! ? | audio, text before it); -1 = not scored


def window_s(audio_s: float) -> int:
    return next((b for b in BUCKETS_S if b >= audio_s + PAD_S), BUCKETS_S[-1])


class FastDecoder:
    """Binds one faster-whisper model; `decode(audio, language)` -> FastResult."""

    def __init__(self, whisper_model) -> None:
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        self._model = whisper_model
        self._tokenizers = {}
        self._make_tokenizer = lambda lang: Tokenizer(whisper_model.hf_tokenizer, True, task="transcribe", language=lang)
        self._suppressed = lambda tok: get_suppressed_tokens(tok, [-1])

    def decode(self, audio: np.ndarray, language: str, beam_size: int = 1,
               cancelled: Callable[[], bool] | None = None, previous: str = "", score_end: bool = False) -> FastResult:
        """`cancelled` is asked between encoding and decoding (CTranslate2 cannot stop a decode);
        `previous`: the text said just before this audio (Whisper's previous-text prompt);
        `score_end`: also score the sentence end it wrote (`end_probability`, the endpoint's signal)."""
        audio_s = audio.size / RATE_HZ
        if audio_s + PAD_S > BUCKETS_S[-1]:
            return FastResult("", 0.0, 0.0, "too_long")
        tok = self._tokenizers.get(language) or self._tokenizers.setdefault(language, self._make_tokenizer(language))
        encoded = self._model.encode(self._features(audio, window_s(audio_s)))
        if cancelled is not None and cancelled():
            return FastResult("", 0.0, 0.0, "preempted")
        before = [tok.sot_prev, *tok.encode(" " + previous.strip())[-PROMPT_TOKENS:]] if previous.strip() else []
        prompt = before + list(tok.sot_sequence)
        max_new = int(TOKENS_PER_S * audio_s) + 8
        result = self._model.model.generate(
            encoded, [prompt], beam_size=beam_size, max_length=len(prompt) + max_new,
            return_scores=True, return_no_speech_prob=True, suppress_blank=True,
            suppress_tokens=self._suppressed(tok), max_initial_timestamp_index=50)[0]
        ids = result.sequences_ids[0]
        text_ids, closed = _cut_at_audio_end(ids, tok.timestamp_begin, audio_s)
        text = tok.decode(text_ids).strip()
        avg_logprob = result.scores[0] * len(ids) / (len(ids) + 1) if ids else 0.0
        stopped = len(ids) < max_new  # by end-of-text, not by the length cap
        rejected = _reject_reason(text, closed, avg_logprob, stopped)
        end_probability = (self._end_probability(encoded, prompt, text_ids, window_s(audio_s))
                           if score_end and rejected is None and text.endswith(SENTENCE_ENDS) else -1.0)
        return FastResult(text, avg_logprob, result.no_speech_prob, rejected, end_probability)

    def _end_probability(self, encoded, prompt: list[int], text_ids: list[int], seconds: int) -> float:
        """How likely Whisper finds the closing punctuation it wrote, the text before it given: one
        teacher-forced pass on the encoder output already here (~30 ms on two cores; beam search
        returns no per-step probabilities). Whisper writes a full stop at many mid-sentence pauses,
        but with less conviction than at a real end (README, "When is the turn over?")."""
        aligned = self._model.model.align(encoded, prompt, [text_ids], seconds * FRAMES_PER_S, median_filter_width=7)
        probabilities = aligned[0].text_token_probs
        return float(probabilities[-1]) if probabilities else -1.0

    def _features(self, audio: np.ndarray, seconds: int) -> np.ndarray:
        padded = np.zeros(seconds * RATE_HZ, dtype=np.float32)
        padded[:audio.size] = audio
        return self._model.feature_extractor(padded, padding=0)[:, : seconds * FRAMES_PER_S]


def _cut_at_audio_end(ids: list[int], timestamp_begin: int, audio_s: float) -> tuple[list[int], bool]:
    """Text tokens up to the first timestamp at the audio's end; (tokens, whether one closed it)."""
    text_ids, last_ts = [], None
    for token in ids:
        if token < timestamp_begin:
            text_ids.append(token)
            continue
        last_ts = (token - timestamp_begin) * 0.02
        if text_ids and last_ts >= audio_s - 0.1:
            return text_ids, True
    return text_ids, last_ts is not None and bool(text_ids) and ids[-1] >= timestamp_begin


def _reject_reason(text: str, closed: bool, avg_logprob: float, stopped: bool = False) -> str | None:
    # A decode that stopped by itself right after a sentence end, confidently, is complete though no
    # timestamp closed it (seen when silence follows the last word); anything else unclosed is suspect.
    complete = stopped and text.endswith(SENTENCE_ENDS) and avg_logprob >= MIN_UNCLOSED_LOGPROB
    if not closed and not complete:
        return "no_end_timestamp"
    if repeats(text):
        return "repetition"
    if avg_logprob < MIN_AVG_LOGPROB:
        return "low_logprob"
    return None


def repeats(text: str) -> bool:
    """A phrase of 2+ words said twice in a row, or one word three times: Whisper looping."""
    words = re.findall(r"\w+", text.lower())
    for n in range(1, len(words) // 2 + 1):
        needed = 3 if n == 1 else 2
        for i in range(len(words) - n * needed + 1):
            if all(words[i:i + n] == words[i + k * n:i + (k + 1) * n] for k in range(1, needed)):
                return True
    return False
