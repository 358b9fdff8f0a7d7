"""Turn latency on the live microphone path: end of speech -> final, WER, turns split, and idle CPU.

    .venv/bin/python -m bench.turns [--count 24] [--runs 3] [--endpoint text|silence] [--min-s 2]

One command for issue 12's figures. In each run:
- the original configuration (bench/original.py: plain faster-whisper, beam 5, full 30 s window)
  on the same files: its p50 per prompt is the machine's speed (the issues' targets are stated
  for a machine where this is ~800 ms), its WER on both sets what the audio itself allows;
- `prompts`: `--count` Debian French prompts (evenly spaced over the corpus, at most `--max-s`
  long) played one by one into the private PulseAudio microphone (pipeline/harness/pulse.py);
- `hesitation`: the same prompts with a 500-700 ms pause inserted at a word boundary in the
  middle (bench/hesitation.py): each is still one turn;
- for each set: end of speech -> final received by a subscriber (p50/p95/max, the last final of
  the prompt against the real end of the voice in the played file), WER of the finals joined,
  and how many prompts came out as more than one final; and where the wait went (p50 of each part:
  audio path, endpoint silence, decode after the close, IPC and publish; see `budget`);
- idle: the share of one core of every process over `--idle-s` of silence (bench.idle_cpu).
With `--runs N` it prints every run and the medians. `--endpoint silence` measures the fixed
400 ms rule, for comparison; `--no-partials` turns interim text off (vad.partial_interval_ms: 0),
to measure what the partials' decodes cost the final on two cores; `--stretch-min-s 3` decodes
after the stretch already decoded at a pause (transcribe.stretch_min_s, off by default), to measure it;
`--cpu-workers 2 --cpu-threads 1` runs a pool of two one-thread workers (partials, copies and
finals then no longer wait for one another's decode on one worker); `--speculate-after-ms` sets that
`vad` field for the run (the silence before the speculative copy leaves), and `--vad KEY=VALUE`
any other (`--vad turn_model_sure_probability=0.9`: Smart Turn may close a sentence the decoder
doubted).
`long_p95_ms`: the p95 over the turns whose voice lasts LONG_S or more.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np

from bench.corpus import Prompt, ensure_installed, load_prompts
from bench.hesitation import RATE, with_hesitation
from bench.idle_cpu import measure as measure_idle
from bench.original import load_original, original_run, transcribe_original
from bench.run import pick, setting
from bench.wer import corpus_wer
from pipeline.audio import load_audio
from pipeline.harness.pipeline_process import PipelineProcess, pipeline_config
from pipeline.harness.pulse import PulseServer
from pipeline.harness.speech import speech_end_s
from pipeline.harness.waiting import wait_until

BUDGET = ("audio_path", "endpoint", "decode", "ipc_publish")
LONG_S = 10.0  # the "utterances of 10-20 s"


def reference(model, prompts: list[Prompt], hesitations: list[Path]) -> dict:
    """The original configuration on the same files: p50 per prompt (the machine-speed anchor), and
    its WER on both sets (how much of the hesitation set's WER is the splice, not the pipeline)."""
    p50_ms, texts = original_run(model, prompts)
    paused = [" ".join(s.text for s in transcribe_original(model, load_audio(path, 600))) for path in hesitations]
    return {"reference_p50_ms": p50_ms,
            "reference_wer_pct": round(corpus_wer([(p.text, t) for p, t in zip(prompts, texts)]), 1),
            "reference_hesitation_wer_pct": round(corpus_wer([(p.text, t) for p, t in zip(prompts, paused)]), 1)}


def budget(pipeline: PipelineProcess, final, voice_end: float, received: float) -> dict[str, float]:
    """Where one turn's wait went (ms), from the final and the VAD's and the worker's log lines:

    audio path   end of voice -> the VAD's first window of the closing silence (PulseAudio, PortAudio,
                 capture, Silero's lag; the harness's own ~20 ms included)
    endpoint     the silence the VAD waited before closing (speculation, verdict, rule)
    decode       the close -> the worker's final (its `utterance_transcribed` line): the decode still
                 running after the close, the speculative copy's or a fresh one (~0 when the copy's
                 answer was ready at the close; on long speech, the rest of the copy's decode)
    ipc_publish  the rest: the worker's final -> sink -> subscriber
    and, within the endpoint, `verdict`: the silence heard when the worker's last verdict on this turn
    came back (the copy's wait, its decode and Smart Turn); absent when no verdict came in time.
    """
    closed = pipeline.find("utterance_closed", utt_id=final.utt_id)
    done = pipeline.find("utterance_transcribed", utt_id=final.utt_id)
    if not closed or not done:
        return {}
    endpoint_ms = closed[-1].get("silence_ms", 0.0)
    total_ms = (received - voice_end) * 1000
    close_ms = (final.t_closed_wall_s - voice_end) * 1000
    decode_ms = max(0.0, (_logged_at(done[-1]) - final.t_closed_wall_s) * 1000)
    judged = pipeline.find("turn_judged", utt_id=final.utt_id)
    return {"audio_path": close_ms - endpoint_ms, "endpoint": endpoint_ms, "decode": decode_ms,
            "ipc_publish": total_ms - close_ms - decode_ms, **({"verdict": judged[-1]["silence_ms"]} if judged else {})}


def _logged_at(event: dict) -> float:
    """The wall-clock time of a log line (structlog's ISO timestamp, UTC)."""
    return datetime.fromisoformat(event["timestamp"]).timestamp()


def play_one(pulse: PulseServer, pipeline: PipelineProcess, wav: Path, settle_s: float) -> tuple[float, list, dict]:
    """Play one file; (last final's arrival - end of voice, the finals of this turn, its budget).

    The turn is over when a final has arrived after the voice ended and no other comes for
    `settle_s` (longer than the longest closing silence), like a speaker waiting for an answer.
    """
    before = len(pipeline.subscriber.transcripts())
    started = time.time()
    pulse.play(wav)
    end = started + speech_end_s(wav)
    received = pipeline.subscriber.received_at
    wait_until(lambda: any(received.get(t.utt_id, 0) > end for t in pipeline.subscriber.transcripts()[before:]),
               60, what=f"the final of {wav.name}")
    count = -1
    while count != len(pipeline.subscriber.transcripts()):  # quiet for settle_s: the turn is complete
        count = len(pipeline.subscriber.transcripts())
        time.sleep(settle_s)  # the pace of a conversation, not a synchronisation: it only ends the turn
    finals = pipeline.subscriber.transcripts()[before:]
    last = max(finals, key=lambda t: received[t.utt_id])
    return received[last.utt_id] - end, finals, budget(pipeline, last, end, received[last.utt_id])


def play_set(pulse, pipeline, items: list[tuple[Path, str]], settle_s: float) -> dict:
    latencies, pairs, split, budgets, long = [], [], 0, [], []
    for wav, reference in items:
        latency_s, finals, spent = play_one(pulse, pipeline, wav, settle_s)
        latencies.append(latency_s * 1000)
        long += [latency_s * 1000] if speech_end_s(wav) >= LONG_S else []
        pairs.append((reference, " ".join(t.text for t in finals)))
        split += len(finals) > 1
        budgets += [spent] if spent else []
    ms = sorted(latencies)
    return {"p50_ms": round(statistics.median(ms)), "p95_ms": round(float(np.percentile(ms, 95))),
            "max_ms": round(ms[-1]), "wer_pct": round(corpus_wer(pairs), 1), "turns_split": split, "turns": len(ms),
            "long_turns": len(long), "long_p95_ms": round(float(np.percentile(long, 95))) if long else 0,
            **{f"{part}_p50_ms": round(statistics.median(b[part] for b in budgets)) for part in BUDGET if budgets},
            **_verdict_p50(budgets)}


def _verdict_p50(budgets: list[dict]) -> dict:
    verdicts = [b["verdict"] for b in budgets if "verdict" in b]
    return {"verdict_p50_ms": round(statistics.median(verdicts)), "verdicts": len(verdicts)} if verdicts else {}


def live_run(prompts: list[Prompt], hesitations: list[Path], vad: dict, stretch_min_s: float | None = None,
             cpu: dict | None = None) -> dict:
    """`vad`: overrides of the `vad` slice; `cpu`: of `transcribe.cpu` (a pool: `{"workers": 2, "cpu_threads": 1}`)."""
    pulse = PulseServer()
    pulse.start()
    run_dir = Path(tempfile.mkdtemp(prefix="luxa-turns-"))
    cfg = pipeline_config(run_dir, transcribe={"gpu": {"enabled": False}, "cpu": cpu or {},
                                                 **({} if stretch_min_s is None else {"stretch_min_s": stretch_min_s})},
                          vad=vad)
    pipeline = PipelineProcess(run_dir, cfg, env=pulse.env)
    settle_s = (pipeline.cfg.vad.max_silence_ms + 500) / 1000
    try:
        wait_until(lambda: pipeline.find("worker_switched", to_worker="transcribe_cpu"), 120, what="worker routed")
        play_one(pulse, pipeline, prompts[0].path, settle_s)  # warm the audio path up (its first play is slow)
        result = {"prompts": play_set(pulse, pipeline, [(p.path, p.text) for p in prompts], settle_s),
                  "hesitation": play_set(pulse, pipeline, list(zip(hesitations, (p.text for p in prompts))),
                                         settle_s)}
        (run_dir / "pipeline.log").write_text("".join(pipeline.stderr_lines))
        result["log"] = str(run_dir / "pipeline.log")
        return result
    finally:
        pipeline.stop()
        pulse.stop()


def medians(runs: list[dict]) -> dict:
    out = {k: statistics.median(r[k] for r in runs) for k in ("reference_p50_ms", "reference_wer_pct",
                                                               "reference_hesitation_wer_pct", "idle_cpu_percent")}
    for name in ("prompts", "hesitation"):
        out[name] = {k: statistics.median(r[name][k] for r in runs) for k in runs[0][name]
                     if all(k in r[name] for r in runs)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=24)
    parser.add_argument("--max-s", type=float, default=20.0, help="skip prompts longer than this (s)")
    parser.add_argument("--min-s", type=float, default=2.0, help="skip prompts shorter than this (s); 10: the long set")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--endpoint", choices=("text", "silence"), default="text")
    parser.add_argument("--no-partials", action="store_true", help="interim text off (vad.partial_interval_ms: 0)")
    parser.add_argument("--stretch-min-s", type=float, default=None,
                        help="transcribe.stretch_min_s for this run (3: decode after a pause's stretch; 0: off)")
    parser.add_argument("--speculate-after-ms", type=int, default=None,
                        help="vad.speculate_after_ms for this run (the silence before the speculative copy leaves)")
    parser.add_argument("--vad", type=setting, action="append", default=[], metavar="KEY=VALUE",
                        help="a `vad` config field for this run (repeatable)")
    parser.add_argument("--idle-s", type=float, default=60.0)
    parser.add_argument("--cpu-workers", type=int, default=1, help="transcribe.cpu.workers: the CPU pool's size")
    parser.add_argument("--cpu-threads", type=int, default=2, help="transcribe.cpu.cpu_threads of each worker")
    args = parser.parse_args()
    ensure_installed("fr")
    prompts = pick([p for p in load_prompts("fr") if load_audio(p.path, 600).size >= args.min_s * RATE], args.count,
                   args.max_s)
    folder = Path(tempfile.mkdtemp(prefix="luxa-hesitation-"))
    rng = random.Random(12)
    original = load_original()
    hesitations = [with_hesitation(p, original, folder, rng) for p in prompts]
    vad = {"endpoint": args.endpoint, **({} if not args.no_partials else {"partial_interval_ms": 0}),
           **({} if args.speculate_after_ms is None else {"speculate_after_ms": args.speculate_after_ms}),
           **dict(args.vad)}
    runs = []
    for run in range(args.runs):
        row = {"run": run + 1, "endpoint": args.endpoint, "partials": not args.no_partials,
               "stretch_min_s": args.stretch_min_s, "cpu_workers": args.cpu_workers, "cpu_threads": args.cpu_threads,
               "vad": vad, **reference(original, prompts, hesitations),
               **live_run(prompts, hesitations, vad, stretch_min_s=args.stretch_min_s,
                          cpu={"workers": args.cpu_workers, "cpu_threads": args.cpu_threads})}
        row["idle_cpu_percent"] = measure_idle(args.idle_s)["total_percent"] if args.idle_s else 0.0
        runs.append(row)
        print(json.dumps(row), flush=True)
    if args.runs > 1:
        print(json.dumps({"median_of_runs": args.runs, "endpoint": args.endpoint, "partials": not args.no_partials,
                          **medians(runs)}))


if __name__ == "__main__":
    main()
