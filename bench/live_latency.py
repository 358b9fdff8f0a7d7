"""End of speech -> final transcript, through a real audio server (issue 4's measurement).

    .venv/bin/python -m bench.live_latency [--count 24]

Starts the private PulseAudio server of pipeline/harness/pulse.py, runs `python supervisor.py` on the live
microphone path, plays `--count` Debian French prompts one by one into the virtual microphone and
times each final transcript against the moment the voice really stops in the played file.
Prints p50/p95 and the partial cadence.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.corpus import ensure_installed, load_prompts
from bench.run import pick
from pipeline.harness.pipeline_process import PipelineProcess, pipeline_config
from pipeline.harness.pulse import PulseServer
from pipeline.harness.speech import speech_end_s
from pipeline.harness.waiting import wait_until


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=24)
    args = parser.parse_args()
    ensure_installed("fr")
    prompts = pick(load_prompts("fr"), args.count, 10.0)
    pulse = PulseServer()
    pulse.start()
    run_dir = Path(tempfile.mkdtemp(prefix="luxa-live-"))
    pipeline = PipelineProcess(run_dir, pipeline_config(run_dir, transcribe={"gpu": {"enabled": False}}), env=pulse.env)
    try:
        wait_until(lambda: pipeline.find("worker_switched", to_worker="transcribe_cpu"), 120, what="worker routed")
        latencies = []
        for prompt in prompts:
            before = len(pipeline.subscriber.transcripts())
            started = time.time()
            pulse.play(prompt.path)
            final = wait_until(lambda: pipeline.subscriber.transcripts()[before:], 30, what=prompt.name)[0]
            latencies.append(pipeline.subscriber.received_at[final.utt_id] - (started + speech_end_s(prompt.path)))
        partials = pipeline.subscriber.partials()
        gaps = [b.t_closed_wall_s - a.t_closed_wall_s for a, b in zip(partials, partials[1:]) if a.utt_id == b.utt_id]
        ms = sorted(x * 1000 for x in latencies)
        print(json.dumps({"utterances": len(ms), "end_of_speech_to_final_p50_ms": round(statistics.median(ms)),
                          "p95_ms": round(float(np.percentile(ms, 95))), "max_ms": round(ms[-1]),
                          "partials": len(partials), "partial_cadence_median_ms": round(statistics.median(gaps) * 1000)
                          if gaps else None}))
    finally:
        pipeline.stop()
        pulse.stop()


if __name__ == "__main__":
    main()
