"""What listening to a silent microphone costs: CPU and memory of every process while nobody speaks.

    .venv/bin/python -m bench.idle_cpu [--seconds 60] [--runs 3] [--noise-dbfs -50] [--settle-s 10]

Starts the private PulseAudio server of pipeline/harness/pulse.py (a virtual microphone nobody
plays into), runs `python supervisor.py` on it with the shipped defaults, waits for `/ready`, for
every spare and `--settle-s` more (steady state, not start-up), then reads each process's CPU time from /proc over `--seconds`. Prints the
share of one core per process (supervisor, stages, spares) and in all, and the resident memory;
with `--runs N`, the medians of N runs. `--noise-dbfs`: the room is not silent: white noise at
that RMS level plays into the microphone all along (a laptop microphone's floor is -60 to -45
dBFS), so the VAD's silence floor (vad.silence_floor_dbfs) does not spare Silero.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

from pipeline.harness.pipeline_process import PipelineProcess, pipeline_config
from pipeline.harness.pulse import PulseServer
from pipeline.harness.scrape import get
from pipeline.harness.waiting import wait_until
from pipeline.procs import rss_mib

TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """User + system CPU time of one process so far (s)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S


def processes(pipeline: PipelineProcess) -> dict[str, int]:
    """name -> pid for the supervisor, every active stage and every spare."""
    found = {"supervisor": pipeline.proc.pid}
    found |= {name: pid for name, pid in pipeline.stage_pids().items() if name != "transcribe_gpu"}
    found |= {f"{name} (spare)": pid for name, pid in pipeline.spare_pids().items()}
    return found


def room_noise(pulse: PulseServer, dbfs: float, seconds: float) -> subprocess.Popen:
    """White noise at `dbfs` RMS played into the virtual microphone for `seconds` (in the background)."""
    wav = pulse.dir / "noise.wav"
    rng = np.random.default_rng(7)
    soundfile.write(wav, (rng.standard_normal(int(seconds * 16000)) * 10 ** (dbfs / 20)).astype(np.float32), 16000)
    return subprocess.Popen(["paplay", "--device=virtmic", str(wav)], env={**os.environ, **pulse.env})


def measure(seconds: float, noise_dbfs: float | None = None, settle_s: float = 10.0) -> dict:
    pulse = PulseServer()
    pulse.start()
    run_dir = Path(tempfile.mkdtemp(prefix="luxa-idle-"))
    pipeline = PipelineProcess(run_dir, pipeline_config(run_dir), env=pulse.env)
    noise = None
    try:
        if noise_dbfs is not None:
            noise = room_noise(pulse, noise_dbfs, seconds + 180)  # outlasts start-up and the window
        url = pipeline.metrics_url()
        wait_until(lambda: get(f"{url}/ready")[0] == 200, 120, what="/ready")
        wait_until(lambda: {"capture", "vad", "sink", "transcribe_cpu"} <= {e["stage_name"] for e in
                                                                          pipeline.find("spare_ready")},
                   120, what="every spare preloaded")
        time.sleep(settle_s)  # start-up is over (spares' last logs, the audio stream's first seconds)
        procs = processes(pipeline)
        before = {name: cpu_s(pid) for name, pid in procs.items()}
        started = time.monotonic()
        time.sleep(seconds)  # the measurement window itself
        elapsed = time.monotonic() - started
        share = {name: (cpu_s(pid) - before[name]) / elapsed * 100 for name, pid in procs.items()}
        rss = {name: rss_mib(pid) for name, pid in procs.items()}
        return {"cpu_percent_of_one_core": {k: round(v, 2) for k, v in share.items()},
                "total_percent": round(sum(share.values()), 2), "rss_mib": {k: round(v) for k, v in rss.items()},
                "total_rss_mib": round(sum(rss.values())), "processes": len(procs), "seconds": round(elapsed, 1)}
    finally:
        if noise is not None:
            noise.kill()
        pipeline.stop()
        pulse.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--noise-dbfs", type=float, default=None, help="room noise played all along (RMS dBFS)")
    parser.add_argument("--settle-s", type=float, default=10.0, help="wait this long after the spares are ready")
    args = parser.parse_args()
    runs = []
    for run in range(args.runs):
        runs.append(measure(args.seconds, args.noise_dbfs, args.settle_s))
        print(json.dumps({"run": run + 1, **runs[-1]}), flush=True)
    if args.runs > 1:
        per_process = {name: statistics.median(r["cpu_percent_of_one_core"].get(name, 0.0) for r in runs)
                       for name in runs[0]["cpu_percent_of_one_core"]}
        print(json.dumps({"median_of_runs": args.runs, "noise_dbfs": args.noise_dbfs, "total_percent": statistics.median(r["total_percent"] for r in runs),
                          "cpu_percent_of_one_core": {k: round(v, 2) for k, v in per_process.items()},
                          "total_rss_mib": statistics.median(r["total_rss_mib"] for r in runs)}))


if __name__ == "__main__":
    main()
