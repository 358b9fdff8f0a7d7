"""The pipeline part of the benchmark: `supervisor.py --source` at real-time pace, measured from outside.

The prompts play as one stream with a second of silence between them, as a microphone would hear
someone say them: each utterance is closed by the VAD's silence rule, not by the end of a file."""

from __future__ import annotations

import json
import shutil
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

from bench.corpus import write_stream
from bench.wer import corpus_wer
from pipeline.harness.pipeline_process import PipelineProcess, pid_alive
from pipeline.harness.waiting import wait_until
from pipeline.procs import rss_mib

PAUSE_S = 1.0  # silence between prompts: utterances end the way they do at a microphone, by silence


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/ready", timeout=2) as reply:
            return reply.status == 200
    except OSError:
        return False


def run_pipeline(prompts: list, config_path: Path, log_path: Path | None = None) -> dict:
    """Plays the prompts through the real pipeline; latencies, WER per prompt, RSS, start-up."""
    run_dir = Path(tempfile.mkdtemp(prefix="luxa-bench-"))
    stream = run_dir / "prompts.wav"
    offsets = list(zip(write_stream(prompts, stream, PAUSE_S), prompts))  # (start_s in the stream, prompt)
    cfg = yaml.safe_load(config_path.read_text()) or {}
    cfg.update(run_dir=str(run_dir), metrics={"port": 0})
    started = time.monotonic()
    pipeline = PipelineProcess(run_dir, cfg, "--source", str(stream), "--quiet")
    try:
        url = pipeline.metrics_url()
        wait_until(lambda: _ready(url), 120, what="pipeline ready")
        start_to_ready = time.monotonic() - started
        peak: dict[str, float] = {}
        while pipeline.proc.poll() is None:
            spares = {f"{name} (spare)": pid for name, pid in pipeline.spare_pids().items()}
            for name, pid in {**pipeline.stage_pids(), **spares}.items():
                if pid_alive(pid):
                    peak[name] = max(peak.get(name, 0.0), rss_mib(pid))
            time.sleep(0.5)  # sampling RSS while the run goes on, not synchronising
        pipeline.wait_exit()
    finally:
        pipeline.stop()
    finals = pipeline.subscriber.transcripts()
    received = pipeline.subscriber.received_at
    latencies = [received[t.utt_id] - t.t_closed_wall_s for t in finals]
    by_prompt: dict[str, list[str]] = {p.name: [] for p in prompts}
    for t in finals:
        # By its middle: the VAD's pre-roll (500 ms) starts an utterance a little before its prompt.
        owner = max((o for o in offsets if o[0] <= (t.start_s + t.end_s) / 2), key=lambda o: o[0])[1]
        by_prompt[owner.name].append(t.text)
    if log_path:  # every process's JSON log lines, to see what one slow utterance went through
        log_path.write_text("".join(pipeline.stderr_lines))
    shutil.rmtree(run_dir, ignore_errors=True)
    pairs = [(p.text, " ".join(by_prompt[p.name])) for p in prompts]
    close = sorted(x * 1000 for x in latencies)
    return {
        "close_to_received": {"p50_ms": round(statistics.median(close)), "p95_ms": round(close[int(0.95 * (len(close) - 1))]),
                              "max_ms": round(close[-1]), "n": len(close)},
        "latencies_ms": close, "wer_pct": round(corpus_wer(pairs), 1),
        "start_to_ready_s": round(start_to_ready, 2),
        "rss_mib": {**{k: round(v) for k, v in sorted(peak.items())}, "total": round(sum(peak.values()))},
        "per_prompt": json.loads(json.dumps(dict(pairs))),
    }
