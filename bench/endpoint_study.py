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
bench.turns plays them) and how long the real ends wait.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
from prometheus_client import CollectorRegistry, Histogram

from bench.corpus import ensure_installed, load_prompts
from bench.run import pick
from bench.turns import RATE, hesitation_cut
from pipeline.audio import load_audio
from pipeline.config import PipelineConfig
from pipeline.endpointing import TurnVerdict, judge_turn, weigh
from pipeline.harness.speech import SPEECH_LEVEL
from pipeline.transcription.engine import Engine
from pipeline.transcription.turn_model import SideTurnModel, SmartTurn, verified

PRE_ROLL_S = 0.5
PAUSE_MS = (500, 700)  # the hesitations bench.turns inserts


def tier(verdict: TurnVerdict) -> str:
    if not verdict.complete:
        return "unfinished"
    return "unsure" if verdict.reason == "unsure" else "sure"


def moments(audio: np.ndarray, after_s: float) -> dict[str, np.ndarray]:
    """The utterance as the VAD would hold it at the end, and at the hesitation."""
    loud = np.flatnonzero(np.abs(audio) > SPEECH_LEVEL)
    start, end, cut = max(0, loud[0] - int(PRE_ROLL_S * RATE)), loud[-1] + 1, hesitation_cut(audio)
    silence = np.zeros(int(after_s * RATE), dtype=np.float32)
    tail = audio[end:end + silence.size]
    return {"end": np.concatenate([audio[start:end], tail, silence[tail.size:]]),
            "cut": np.concatenate([audio[start:cut], silence])}


def split_share(wait_ms: float) -> float:
    """The share of 500-700 ms pauses (uniform) a rule waiting `wait_ms` of silence would split."""
    lo, hi = PAUSE_MS
    return float(np.clip((hi - wait_ms) / (hi - lo), 0.0, 1.0))


# Candidate rules: (tier, Smart Turn probability) -> silence (ms) before the close; 0 = at the verdict.
def rule_text(t: str, p: float, hold_ms: int) -> int:
    return {"sure": 0, "unsure": 400, "unfinished": 1000}[t]


def rule_text_hold_unsure(t: str, p: float, hold_ms: int) -> int:
    return {"sure": 0, "unsure": hold_ms, "unfinished": 1000}[t]


def rule_both(t: str, p: float, hold_ms: int) -> int:
    """Close at once when both say finished, hold when either doubts, the bound when neither thinks so."""
    if t == "sure":
        return 0 if p >= 0.5 else hold_ms
    if t == "unsure":
        return 400 if p >= 0.5 else 1000
    return hold_ms if p >= 0.5 else 1000


def rule_turn_model(t: str, p: float, hold_ms: int) -> int:
    return 0 if p >= 0.5 else 1000


def rule_shipped(t: str, p: float, hold_ms: int) -> int:
    """pipeline/endpointing.py: at once only when the text is finished and sure and Smart Turn agrees;
    any other finished text holds, an unfinished one waits for the bound."""
    if t == "sure":
        return 0 if p >= 0.5 else hold_ms
    return hold_ms if t == "unsure" else 1000


RULES = {"text, unsure 400 ms (shipped before)": rule_text, "text, unsure held": rule_text_hold_unsure,
         "text and Smart Turn, unsure 400 ms": rule_both, "Smart Turn alone": rule_turn_model,
         "text and Smart Turn, unsure held (shipped)": rule_shipped}


def rescued(moment: dict, min_end_probability: float | None) -> str:
    """The tier, an unsure text counted as sure when Whisper gave its full stop >= min_end_probability."""
    if moment["tier"] == "unsure" and min_end_probability is not None \
            and moment["end_probability"] >= min_end_probability:
        return "sure"
    return moment["tier"]


def evaluate(rows: list[dict], hold_ms: int, min_end_probability: float | None = None) -> dict:
    variants = [(name, rule, None) for name, rule in RULES.items()]
    if min_end_probability is not None:
        variants.append((f"shipped, and a full stop scored >= {min_end_probability} is sure", rule_shipped,
                         min_end_probability))
    out = {}
    for name, rule, threshold in variants:
        ends = [rule(rescued(r["end"], threshold), r["end"]["p"], hold_ms) for r in rows]
        cuts = [rule(rescued(r["cut"], threshold), r["cut"]["p"], hold_ms) for r in rows]
        out[name] = {"hesitations_split_pct": round(100 * statistics.mean(split_share(w) for w in cuts), 1),
                     "ends_at_verdict_pct": round(100 * statistics.mean(w == 0 for w in ends), 1),
                     "ends_wait_p50_ms": statistics.median(ends), "ends_wait_p95_ms": float(np.percentile(ends, 95))}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--max-s", type=float, default=20.0)
    parser.add_argument("--after-ms", type=int, default=150, help="silence after the voice in each moment")
    parser.add_argument("--hold-ms", type=int, default=750, help="the doubtful case's wait in the candidate rules")
    parser.add_argument("--end-probability", type=float, default=None,
                        help="also evaluate: an unsure text whose full stop Whisper scored at least this counts as sure")
    args = parser.parse_args()
    ensure_installed("fr")
    cfg = PipelineConfig()
    prompts = pick([p for p in load_prompts("fr") if load_audio(p.path, 600).size >= 2 * RATE], args.count, args.max_s)
    engine = Engine(cfg.transcribe.cpu, cfg.transcribe, cfg.models_cache_dir())
    engine.load()
    engine.warm_up()
    turn_model = SmartTurn(verified(cfg.models_cache_dir()))
    turn_model.probability(np.zeros(RATE, dtype=np.float32))
    side = SideTurnModel(turn_model, Histogram("bench_turn_model_seconds", "Smart Turn", registry=CollectorRegistry()))
    rows, decode_ms, turn_ms, both_ms = [], [], [], []
    for prompt in prompts:
        row = {"prompt": prompt.name}
        for moment, audio in moments(load_audio(prompt.path, 600), args.after_ms / 1000).items():
            started = time.perf_counter()
            result = engine.transcribe(audio, score_end=args.end_probability is not None)
            decode_ms.append((time.perf_counter() - started) * 1000)
            verdict = weigh(judge_turn(result.text, result.language, result.is_speech), result.end_logprob,
                                  cfg.vad.turn_min_logprob)
            started = time.perf_counter()
            p = turn_model.probability(audio)
            turn_ms.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()  # the worker's way: Smart Turn on its thread beside the decode
            answer = side.ask(audio)
            engine.transcribe(audio, score_end=args.end_probability is not None)
            answer.result()
            both_ms.append((time.perf_counter() - started) * 1000)
            row[moment] = {"tier": tier(verdict), "p": round(p, 3), "end_logprob": round(result.end_logprob, 3),
                           "end_probability": round(result.end_probability, 3), "text": result.text}
        rows.append(row)
        print(json.dumps(row, ensure_ascii=False), flush=True)
    joint = {m: {f"{t} / p{'>=' if hi else '<'}0.5": sum(r[m]["tier"] == t and (r[m]["p"] >= 0.5) == hi for r in rows)
                 for t in ("sure", "unsure", "unfinished") for hi in (True, False)} for m in ("end", "cut")}
    print(json.dumps({"prompts": len(rows), "after_ms": args.after_ms, "hold_ms": args.hold_ms,
                      "decode_p50_ms": round(statistics.median(decode_ms)),
                      "smart_turn_p50_ms": round(statistics.median(turn_ms)),
                      "decode_with_smart_turn_beside_p50_ms": round(statistics.median(both_ms)), "joint": joint,
                      "rules": evaluate(rows, args.hold_ms, args.end_probability)}, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
