"""Which signals tell a finished sentence from a hesitation? Measured offline on the Debian prompts.

    .venv/bin/python -m bench.endpoint_study [--count 40]

For each prompt, two moments the VAD asks "is the turn over?" (`--after-ms` of silence after the
voice, as its speculative copy holds): at the real end of the prompt, and at a hesitation (the
prompt cut where bench.turns inserts its pause, silence after it). For each moment:
- the text verdict of the shipped speculative decode (pipeline/endpointing.py): `sure` (a finished
  sentence the decoder was sure of), `unsure`, `unfinished`;
- Smart Turn v3.2's probability that the turn is complete (pipeline/transcription/turn_model.py);
- `end_probability`: the probability Whisper gives the full stop it wrote, the text before it
  given (FastDecoder `score_end`), a candidate signal measured with `--end-probability P`, which
  adds the rule "an unsure text whose full stop scored at least P counts as sure" (the decode
  times then include that ~30 ms pass).
Prints the joint counts, each signal's cost (the decode, Smart Turn after it, and both as the
worker runs them: Smart Turn on one thread beside the decode), and for each candidate rule (the
silence it waits before closing) how many hesitations it would split (pauses of 500-700 ms, as
bench.turns plays them) and how long the real ends wait. "configured" is the rule that ships
(pipeline/endpointing.py with config.yaml's `vad` thresholds); `--vad KEY=VALUE` scores it with
others (`--vad turn_model_sure_probability=0.9`: Smart Turn may close a sentence the decoder doubted).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
from prometheus_client import CollectorRegistry, Histogram

from bench.corpus import ensure_installed, load_prompts
from bench.hesitation import PAUSE_S, RATE, hesitation_cut, word_gaps
from bench.original import load_original
from bench.run import pick, setting
from pipeline.audio import load_audio
from pipeline.config import PipelineConfig, VadConfig
from pipeline.endpointing import TurnVerdict, close_after_ms, judge_turn, weigh
from pipeline.harness.speech import SPEECH_LEVEL
from pipeline.transcription.engine import Engine
from pipeline.transcription.turn_model import SideTurnModel, SmartTurn, verified

PRE_ROLL_S = 0.5
PAUSE_MS = tuple(round(s * 1000) for s in PAUSE_S)  # the hesitations bench.turns inserts


def tier(verdict: TurnVerdict) -> str:
    if not verdict.complete:
        return "unfinished"
    return "unsure" if verdict.reason == "unsure" else "sure"


def moments(audio: np.ndarray, after_s: float, gaps: list[tuple[int, int]]) -> dict[str, np.ndarray]:
    """The utterance as the VAD would hold it at the end, and at the hesitation (`gaps`: word_gaps)."""
    loud = np.flatnonzero(np.abs(audio) > SPEECH_LEVEL)
    start, end, cut = max(0, loud[0] - int(PRE_ROLL_S * RATE)), loud[-1] + 1, hesitation_cut(audio, gaps)
    silence = np.zeros(int(after_s * RATE), dtype=np.float32)
    tail = audio[end:end + silence.size]
    return {"end": np.concatenate([audio[start:end], tail, silence[tail.size:]]),
            "cut": np.concatenate([audio[start:cut], silence])}


def split_share(wait_ms: float) -> float:
    """The share of 500-700 ms pauses (uniform) a rule waiting `wait_ms` of silence would split."""
    lo, hi = PAUSE_MS
    return float(np.clip((hi - wait_ms) / (hi - lo), 0.0, 1.0))


# Candidate rules: (a moment, the `vad` config) -> silence (ms) before the close; 0 = at the verdict.
def rule_text(m: dict, vad: VadConfig) -> int:
    return {"sure": 0, "unsure": 400, "unfinished": 1000}[m["tier"]]


def rule_text_hold_unsure(m: dict, vad: VadConfig) -> int:
    return {"sure": 0, "unsure": vad.hold_silence_ms, "unfinished": 1000}[m["tier"]]


def rule_both(m: dict, vad: VadConfig) -> int:
    """Close at once when both say finished, hold when either doubts, the bound when neither thinks so."""
    high = m["p"] >= 0.5
    if m["tier"] == "sure":
        return 0 if high else vad.hold_silence_ms
    if m["tier"] == "unsure":
        return 400 if high else 1000
    return vad.hold_silence_ms if high else 1000


def rule_turn_model(m: dict, vad: VadConfig) -> int:
    return 0 if m["p"] >= 0.5 else 1000


def rule_configured(m: dict, vad: VadConfig) -> int:
    """What ships: pipeline/endpointing.py with `vad`'s thresholds (config.yaml, or --vad)."""
    verdict = weigh(judge_turn(m["text"], "fr", m["is_speech"]), m["end_logprob"], vad.turn_min_logprob,
                    m["p"], vad.turn_model_min_probability, vad.turn_model_sure_probability)
    return close_after_ms(vad.min_silence_ms, vad.hold_silence_ms, vad.max_silence_ms, True, verdict)


RULES = {"text, unsure 400 ms (shipped before)": rule_text, "text, unsure held": rule_text_hold_unsure,
         "text and Smart Turn, unsure 400 ms": rule_both, "Smart Turn alone": rule_turn_model,
         "configured (pipeline/endpointing.py)": rule_configured}


def rescued(moment: dict, min_end_probability: float) -> dict:
    """The moment, an unsure text counted as sure when Whisper gave its full stop >= min_end_probability."""
    if moment["tier"] == "unsure" and moment["end_probability"] >= min_end_probability:
        return {**moment, "tier": "sure", "end_logprob": 0.0}
    return moment


def evaluate(rows: list[dict], vad: VadConfig, min_end_probability: float | None = None) -> dict:
    variants = dict(RULES)
    if min_end_probability is not None:
        variants[f"configured, and a full stop scored >= {min_end_probability} is sure"] = \
            lambda m, v: rule_configured(rescued(m, min_end_probability), v)
    out = {}
    for name, rule in variants.items():
        ends = [rule(r["end"], vad) for r in rows]
        cuts = [rule(r["cut"], vad) for r in rows]
        out[name] = {"hesitations_split_pct": round(100 * statistics.mean(split_share(w) for w in cuts), 1),
                     "ends_at_verdict_pct": round(100 * statistics.mean(w == 0 for w in ends), 1),
                     "ends_wait_p50_ms": statistics.median(ends), "ends_wait_p95_ms": float(np.percentile(ends, 95))}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--max-s", type=float, default=20.0)
    parser.add_argument("--after-ms", type=int, default=150, help="silence after the voice in each moment")
    parser.add_argument("--vad", type=setting, action="append", default=[], metavar="KEY=VALUE",
                        help="a `vad` config field for the rules (repeatable): hold_silence_ms=600, "
                             "turn_model_sure_probability=0.9 ...")
    parser.add_argument("--end-probability", type=float, default=None,
                        help="also evaluate: an unsure text whose full stop Whisper scored at least this counts as sure")
    args = parser.parse_args()
    ensure_installed("fr")
    cfg = PipelineConfig()
    vad = VadConfig.model_validate({**cfg.vad.model_dump(), **dict(args.vad)})
    prompts = pick([p for p in load_prompts("fr") if load_audio(p.path, 600).size >= 2 * RATE], args.count, args.max_s)
    engine = Engine(cfg.transcribe.cpu, cfg.transcribe, cfg.models_cache_dir())
    engine.load()
    engine.warm_up()
    turn_model = SmartTurn(verified(cfg.models_cache_dir()))
    turn_model.probability(np.zeros(RATE, dtype=np.float32))
    side = SideTurnModel(turn_model, Histogram("bench_turn_model_seconds", "Smart Turn", registry=CollectorRegistry()))
    original = load_original()  # its word timestamps place the hesitations, as in bench.turns
    rows, decode_ms, turn_ms, both_ms = [], [], [], []
    for prompt in prompts:
        row = {"prompt": prompt.name}
        whole = load_audio(prompt.path, 600)
        for moment, audio in moments(whole, args.after_ms / 1000, word_gaps(original, whole)).items():
            started = time.perf_counter()
            result = engine.transcribe(audio, score_end=args.end_probability is not None)
            decode_ms.append((time.perf_counter() - started) * 1000)
            verdict = weigh(judge_turn(result.text, result.language, result.is_speech), result.end_logprob,
                            vad.turn_min_logprob)
            started = time.perf_counter()
            p = turn_model.probability(audio)
            turn_ms.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()  # the worker's way: Smart Turn on its thread beside the decode
            answer = side.ask(audio)
            engine.transcribe(audio, score_end=args.end_probability is not None)
            answer.result()
            both_ms.append((time.perf_counter() - started) * 1000)
            row[moment] = {"tier": tier(verdict), "p": round(p, 3), "end_logprob": round(result.end_logprob, 3),
                           "is_speech": result.is_speech,
                           "end_probability": round(result.end_probability, 3), "text": result.text}
        rows.append(row)
        print(json.dumps(row, ensure_ascii=False), flush=True)
    joint = {m: {f"{t} / p{'>=' if hi else '<'}0.5": sum(r[m]["tier"] == t and (r[m]["p"] >= 0.5) == hi for r in rows)
                 for t in ("sure", "unsure", "unfinished") for hi in (True, False)} for m in ("end", "cut")}
    print(json.dumps({"prompts": len(rows), "after_ms": args.after_ms, "vad": dict(args.vad),
                      "decode_p50_ms": round(statistics.median(decode_ms)),
                      "smart_turn_p50_ms": round(statistics.median(turn_ms)),
                      "decode_with_smart_turn_beside_p50_ms": round(statistics.median(both_ms)), "joint": joint,
                      "rules": evaluate(rows, vad, args.end_probability)}, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
