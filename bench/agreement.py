"""Can the final start from what the partials agreed on? Measured, offline, on the Debian prompts.

    .venv/bin/python -m bench.agreement [--count 24] [--min-s 2]

The idea (issue 12, LocalAgreement as in whisper_streaming): decode while the person speaks, so
that at the end only the unstable tail is left. Two ways to use an agreed prefix with faster-whisper's
CTranslate2 decoder, each against the shipped speculative decode (the whole utterance up to 150 ms
after the voice stops, short window, beam 5), per prompt, in the same run:

1. `forced prefix`: the same audio, the decoder given the first 70 % of its own answer as a prefix.
   If a prefix were cheap, this is the best case (the prefix is exactly right).
2. `agreed + tail`: greedy partials every 400 ms from 600 ms on (as the VAD sends them), words
   committed when two successive partials agree on them (never a partial's last word), the audio
   cut between the last committed word and the next (faster-whisper's word alignment), and only the
   tail decoded at the end (beam 5), with the committed text as the decoder's previous-text prompt.

3. `pause cuts + tail`: the audio cut at the middle of each internal pause Silero hears (at least
   PAUSE_MIN_S below 0.35, so no word is split), once a stretch of SEGMENT_MIN_S is behind it and
   the pause ends SETTLE_S before the voice does (its decode is done while the person speaks); each
   stretch decoded at beam 5 with the text before it as the previous-text prompt, and at the end
   only the audio after the last cut.
4. `live cuts`: the cuts the pipeline makes (transcribe.stretch_min_s: 3): where its speculative
   copy leaves, LIVE_COPY_S into a pause of Silero's, once 3 s of new audio lie behind the last cut
   and at least MIN_TAIL_S before the voice ends; the rest decoded `from the cut` (as shipped before)
   or `from the pause's start` (as shipped now: the overlap is silence, and Whisper hears the pause
   before the next word).

Prints the decode time at the end of speech (p50/p95) and the WER of each, for all prompts and
for those of LONG_S or more.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time
from pathlib import Path

import numpy as np

from bench.corpus import ensure_installed, load_prompts
from bench.run import pick
from bench.wer import corpus_wer, words
from pipeline.audio import load_audio
from pipeline.config import PipelineConfig
from pipeline.harness.speech import speech_end_s
from pipeline.silero import WINDOW_SAMPLES, SileroVad
from pipeline.transcription.engine import whisper_factory
from pipeline.transcription.fastpath import TOKENS_PER_S, FastDecoder, _cut_at_audio_end, window_s
from pipeline.transcription.models import resolve_model
from pipeline.transcription.stretches import MIN_TAIL_S

RATE = 16000
PARTIAL_FIRST_S, PARTIAL_EVERY_S = 0.6, 0.4
AFTER_VOICE_S = 0.15  # what the VAD's speculative copy holds after the voice stops
FORCED_SHARE = 0.7
PAUSE_MIN_S, SEGMENT_MIN_S, SETTLE_S, LONG_S = 0.2, 3.0, 1.0, 8.0
LIVE_COPY_S = 0.12  # vad.speculate_after_ms: where a live stretch is cut, into its pause


class Decoder:
    """The shipped short-window decode, opened up: a forced prefix, a previous-text prompt, word times."""

    def __init__(self, cache_dir: Path) -> None:
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        self.model = whisper_factory(resolve_model("base", cache_dir), "cpu", 0, "int8", 2)
        self.fast = FastDecoder(self.model)
        self.tok = Tokenizer(self.model.hf_tokenizer, True, task="transcribe", language="fr")
        self.suppressed = get_suppressed_tokens(self.tok, [-1])

    def decode(self, audio: np.ndarray, beam: int, forced: list[int] | None = None, previous: str = "",
               with_words: bool = False) -> tuple[str, list[int], list[dict]]:
        audio_s = audio.size / RATE
        encoded = self.model.encode(self.fast._features(audio, window_s(audio_s)))
        before = [self.tok.sot_prev, *self.tok.encode(" " + previous)] if previous else []
        prompt = before + list(self.tok.sot_sequence) + (forced or [])
        ids = self.model.model.generate(
            encoded, [prompt], beam_size=beam, max_length=len(prompt) + int(TOKENS_PER_S * audio_s) + 8,
            suppress_blank=True, suppress_tokens=self.suppressed, max_initial_timestamp_index=50)[0].sequences_ids[0]
        text_ids, _ = _cut_at_audio_end(ids, self.tok.timestamp_begin, audio_s)
        found = self.model.find_alignment(self.tok, [text_ids], encoded, int(audio_s * 100))[0] \
            if with_words and text_ids else []
        return self.tok.decode(text_ids).strip(), ids, found


def agreed_prefix(partials: list[list[dict]]) -> list[dict]:
    """LocalAgreement-2: the words two successive partials share from the start, never the newer
    one's last word; each committed word also knows where the next word starts (the cut point)."""
    committed: list[dict] = []
    for older, newer in itertools.pairwise(partials):
        n = 0
        while n < min(len(older), len(newer)) and words(older[n]["word"]) == words(newer[n]["word"]):
            n += 1
        keep = min(n, len(newer) - 1)
        if keep > len(committed):
            committed = [*newer[:keep - 1], {**newer[keep - 1], "next_start": newer[keep]["start"]}]
    return committed


def quiet_runs(audio: np.ndarray, vad: SileroVad) -> list[tuple[float, float]]:
    """(start, end) in s of every run of windows Silero scores below 0.35."""
    window = WINDOW_SAMPLES[RATE]
    quiet = [vad(audio[i:i + window], RATE) < 0.35 for i in range(0, audio.size - window + 1, window)]
    vad.reset()
    runs, run_start = [], None
    for index, is_quiet in enumerate([*quiet, False]):
        if is_quiet and run_start is None:
            run_start = index
        elif not is_quiet and run_start is not None:
            runs.append((run_start * window / RATE, index * window / RATE))
            run_start = None
    return runs


def pause_cuts(audio: np.ndarray, voice_end_s: float, vad: SileroVad) -> list[tuple[int, int]]:
    """Mid-points of the internal pauses a pipeline could commit at while the person speaks, as
    (where a stretch ends, where the next begins) in samples."""
    cuts, last_cut = [], 0.0
    for start_s, end_s in quiet_runs(audio, vad):
        middle = (start_s + end_s) / 2
        if end_s - start_s >= PAUSE_MIN_S and middle - last_cut >= SEGMENT_MIN_S and end_s <= voice_end_s - SETTLE_S:
            cuts.append((int(middle * RATE), int(middle * RATE)))
            last_cut = middle
    return cuts


def live_cuts(audio: np.ndarray, voice_end_s: float, vad: SileroVad, from_pause_start: bool) -> list[tuple[int, int]]:
    """The pipeline's stretches (pipeline/transcription/stretches.py): cut where the copy leaves,
    LIVE_COPY_S into a pause; the next stretch begins there, or where the pause began."""
    cuts, last_cut = [], 0.0
    for start_s, end_s in quiet_runs(audio, vad):
        cut_s = start_s + LIVE_COPY_S
        if end_s - start_s >= LIVE_COPY_S and cut_s - last_cut >= SEGMENT_MIN_S and voice_end_s - cut_s >= MIN_TAIL_S:
            cuts.append((int(cut_s * RATE), int((start_s if from_pause_start else cut_s) * RATE)))
            last_cut = cut_s
    return cuts


def decode_in_stretches(dec: Decoder, utterance: np.ndarray, cuts: list[tuple[int, int]]) -> tuple[str, float]:
    """The text of every stretch, each prompted with the text before it; and the last stretch's time."""
    text, bounds = "", [(0, 0), *cuts, (utterance.size, utterance.size)]
    for (_, start), (end, _) in itertools.pairwise(bounds):
        started = time.perf_counter()
        text = (text + " " + dec.decode(utterance[start:end], 5, previous=text)[0]).strip()
        last_s = time.perf_counter() - started
    return text, last_s


def one_prompt(dec: Decoder, audio: np.ndarray, voice_end_s: float, vad: SileroVad) -> dict:
    utterance = audio[:int((voice_end_s + AFTER_VOICE_S) * RATE)]
    started = time.perf_counter()
    whole, ids, _ = dec.decode(utterance, 5)
    whole_s = time.perf_counter() - started
    started = time.perf_counter()
    dec.decode(utterance, 5, forced=ids[:int(len(ids) * FORCED_SHARE)])
    forced_s = time.perf_counter() - started
    partials, t = [], PARTIAL_FIRST_S
    while t < voice_end_s:
        partials.append(dec.decode(utterance[:int(t * RATE)], 1, with_words=True)[2])
        t += PARTIAL_EVERY_S
    committed = agreed_prefix(partials)
    started = time.perf_counter()
    if committed:
        cut_s = (committed[-1]["end"] + committed[-1]["next_start"]) / 2
        prefix = "".join(w["word"] for w in committed).strip()
        agreed = (prefix + " " + dec.decode(utterance[int(cut_s * RATE):], 5, previous=prefix)[0]).strip()
    else:
        agreed = whole
    tail_s = time.perf_counter() - started if committed else whole_s
    cut, cut_tail_s = decode_in_stretches(dec, utterance, pause_cuts(utterance, voice_end_s, vad))
    live = {}
    for name, from_pause_start in (("live_from_cut", False), ("live_from_pause", True)):
        cuts = live_cuts(utterance, voice_end_s, vad, from_pause_start)
        live[name], live[f"{name}_s"] = decode_in_stretches(dec, utterance, cuts)
    return {"whole": whole, "agreed": agreed, "cut": cut, "whole_s": whole_s, "forced_s": forced_s,
            "tail_s": tail_s, "cut_tail_s": cut_tail_s, "long": voice_end_s >= LONG_S, **live}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=24)
    parser.add_argument("--min-s", type=float, default=2.0, help="only prompts at least this long (s)")
    args = parser.parse_args()
    ensure_installed("fr")
    prompts = pick([p for p in load_prompts("fr") if load_audio(p.path, 600).size >= args.min_s * RATE],
                   args.count, 20.0)
    dec = Decoder(PipelineConfig().models_cache_dir())
    dec.decode(np.zeros(RATE, dtype=np.float32), 1)  # warm-up
    vad = SileroVad()
    rows = [(p, one_prompt(dec, load_audio(p.path, 600), speech_end_s(p.path), vad)) for p in prompts]
    print(json.dumps({"all": summary(rows), f"{LONG_S:g} s or more": summary([r for r in rows if r[1]["long"]])},
                     indent=1))


def summary(rows: list) -> dict:
    if not rows:
        return {"prompts": 0}

    def ms(key: str) -> dict:
        values = [1000 * r[key] for _, r in rows]
        return {"p50_ms": round(statistics.median(values)), "p95_ms": round(float(np.percentile(values, 95)))}

    def wer(key: str) -> float:
        return round(corpus_wer([(p.text, r[key]) for p, r in rows]), 1)

    return {"prompts": len(rows),
            "whole utterance (shipped)": {**ms("whole_s"), "wer": wer("whole")},
            "forced prefix (70 % of its own answer)": ms("forced_s"),
            "agreed + tail": {**ms("tail_s"), "wer": wer("agreed")},
            "pause cuts + tail": {**ms("cut_tail_s"), "wer": wer("cut")},
            "live cuts, rest from the cut": {**ms("live_from_cut_s"), "wer": wer("live_from_cut")},
            "live cuts, rest from the pause's start": {**ms("live_from_pause_s"), "wer": wer("live_from_pause")}}


if __name__ == "__main__":
    main()
