"""Can the final start from what the partials agreed on? Measured, offline, on the Debian prompts.

    .venv/bin/python -m bench.agreement [--count 24]

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

Prints the decode time at the end of speech (p50/p95) and the WER of each.
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
from pipeline.transcription.engine import whisper_factory
from pipeline.transcription.fastpath import TOKENS_PER_S, FastDecoder, _cut_at_audio_end, window_s
from pipeline.transcription.models import resolve_model

RATE = 16000
PARTIAL_FIRST_S, PARTIAL_EVERY_S = 0.6, 0.4
AFTER_VOICE_S = 0.15  # what the VAD's speculative copy holds after the voice stops
FORCED_SHARE = 0.7


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


def one_prompt(dec: Decoder, audio: np.ndarray, voice_end_s: float) -> dict:
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
    return {"whole": whole, "agreed": agreed, "whole_s": whole_s, "forced_s": forced_s,
            "tail_s": time.perf_counter() - started if committed else whole_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=24)
    args = parser.parse_args()
    ensure_installed("fr")
    prompts = pick([p for p in load_prompts("fr") if load_audio(p.path, 600).size >= 2 * RATE], args.count, 20.0)
    dec = Decoder(PipelineConfig().models_cache_dir())
    dec.decode(np.zeros(RATE, dtype=np.float32), 1)  # warm-up
    rows = [(p, one_prompt(dec, load_audio(p.path, 600), speech_end_s(p.path))) for p in prompts]

    def ms(key: str) -> dict:
        values = [1000 * r[key] for _, r in rows]
        return {"p50_ms": round(statistics.median(values)), "p95_ms": round(float(np.percentile(values, 95)))}

    print(json.dumps({
        "prompts": len(rows),
        "whole utterance (shipped)": {**ms("whole_s"), "wer": round(corpus_wer([(p.text, r["whole"]) for p, r in rows]), 1)},
        "forced prefix (70 % of its own answer)": ms("forced_s"),
        "agreed + tail": {**ms("tail_s"), "wer": round(corpus_wer([(p.text, r["agreed"]) for p, r in rows]), 1)},
    }, indent=1))


if __name__ == "__main__":
    main()
