"""Capacity: how many rooms one machine serves, K Wyoming satellites speaking at once.

    .venv/bin/python -m bench.capacity [--sources 1,2,4,8] [--turns 6] [--runs 3]

LUXA runs as shipped, with `audio.device: none` and `servers.wyoming`. For each K, K clients
(Home Assistant satellites, each its own source) stream Debian French prompts at real-time pace,
one turn per prompt, `--pause-s` apart, all at once. Per K: audio-stop -> transcript (p50 / p95 /
max over every turn), WER, and the CPU time of every pipeline process (supervisor, stages,
spares) over the K clients' wall time, in all and per source (share of one core). The largest K
with p95 <= `--target-ms` is what this machine sustains. Plain faster-whisper with the original
request's settings decodes the same prompts first: the machine-speed anchor for every figure.
Medians over the runs; `bench/out/capacity.json`, and `bench/out/capacity.png` with matplotlib.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.corpus import ensure_installed, load_prompts
from bench.idle_cpu import cpu_s, processes
from bench.run import pick
from bench.turns import reference_p50_ms
from bench.wer import corpus_wer
from pipeline.audio import load_audio
from pipeline.harness.pipeline_process import PipelineProcess, pid_alive, pipeline_config
from pipeline.harness.wyoming_client import pcm16, transcribe

OUT = Path(__file__).resolve().parent / "out"
PORT = 10393
RATE = 16000


def one_step(pipeline: PipelineProcess, prompts: list, sources: int, turns: int, pause_s: float) -> dict:
    """K clients at once, each `turns` prompts of its own at real-time pace."""
    shares = [[prompts[(s * turns + t) % len(prompts)] for t in range(turns)] for s in range(sources)]

    async def client(share):
        results = []
        for n, prompt in enumerate(share):
            if n:
                await asyncio.sleep(pause_s)  # the person thinks between two requests
            audio = np.concatenate([load_audio(prompt.path, 600, RATE), np.zeros(RATE // 2, dtype=np.float32)])
            results.append((prompt, await transcribe(PORT, pcm16(audio), RATE, language="fr", realtime=True)))
        return results

    async def everyone():
        return await asyncio.gather(*(client(share) for share in shares))

    pids = processes(pipeline)
    before = {name: cpu_s(pid) for name, pid in pids.items() if pid_alive(pid)}
    started = time.monotonic()
    turns_done = [t for share in asyncio.run(everyone()) for t in share]
    wall_s = time.monotonic() - started
    cpu = sum(cpu_s(pids[name]) - used for name, used in before.items() if pid_alive(pids[name]))
    waits = sorted(r.stop_to_transcript_s * 1000 for _, r in turns_done if r.stop_to_transcript_s is not None)
    return {"sources": sources, "turns": len(turns_done), "answered": len(waits),
            "p50_ms": round(statistics.median(waits)) if waits else None,
            "p95_ms": round(float(np.percentile(waits, 95))) if waits else None,
            "max_ms": round(waits[-1]) if waits else None,
            "wer": round(corpus_wer([(p.text, r.text or "") for p, r in turns_done]), 1),
            "cpu_cores": round(cpu / wall_s, 3), "cpu_per_source": round(cpu / wall_s / sources, 3),
            "wall_s": round(wall_s, 1)}


def medians(rows: list[dict]) -> dict:
    keys = ("p50_ms", "p95_ms", "max_ms", "wer", "cpu_cores", "cpu_per_source")
    return {"sources": rows[0]["sources"], "runs": len(rows),
            **{k: statistics.median(r[k] for r in rows if r[k] is not None) for k in keys},
            "unanswered": sum(r["turns"] - r["answered"] for r in rows)}


def plot(table: list[dict], target_ms: float, anchor_ms: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = [row["sources"] for row in table]
    fig, (lat, cpu) = plt.subplots(1, 2, figsize=(10, 4))
    lat.plot(k, [r["p50_ms"] for r in table], "o-", label="p50")
    lat.plot(k, [r["p95_ms"] for r in table], "s-", label="p95")
    lat.axhline(target_ms, color="grey", linestyle="--", label=f"{target_ms:g} ms")
    lat.set(xlabel="sources speaking at once (K)", ylabel="audio-stop -> transcript (ms)", xscale="log", xticks=k)
    lat.set_xticklabels(k)
    lat.minorticks_off()
    lat.legend()
    cpu.plot(k, [r["cpu_cores"] for r in table], "o-", label="whole pipeline")
    cpu.plot(k, [r["cpu_per_source"] for r in table], "s-", label="per source")
    cpu.set(xlabel="sources speaking at once (K)", ylabel="CPU (cores)", xscale="log", xticks=k)
    cpu.set_xticklabels(k)
    cpu.minorticks_off()
    cpu.legend()
    fig.suptitle(f"LUXA capacity, base int8, one CPU worker (original config: {anchor_ms:g} ms per prompt)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", default="1,2,4,8", help="K values, comma-separated")
    parser.add_argument("--turns", type=int, default=6, help="prompts each source speaks per step")
    parser.add_argument("--pause-s", type=float, default=1.5, help="silence between one source's turns")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--target-ms", type=float, default=1000.0, help="p95 a sustained K stays under")
    parser.add_argument("--max-s", type=float, default=8.0, help="longest prompt used")
    args = parser.parse_args()
    ks = [int(k) for k in args.sources.split(",")]
    ensure_installed("fr")
    prompts = pick(load_prompts("fr"), max(ks) * args.turns, args.max_s)
    anchor_ms = reference_p50_ms(prompts[:8])
    print(f"capacity: {len(prompts)} prompts; original config {anchor_ms:g} ms per prompt (p50 of 8)", flush=True)
    with tempfile.TemporaryDirectory(prefix="luxa-capacity-") as tmp:
        run_dir = Path(tmp)
        run_dir.chmod(0o700)
        cfg = pipeline_config(run_dir, audio={"device": "none"},
                              servers={"wyoming": {"uri": f"tcp://127.0.0.1:{PORT}", "max_clients": max(16, max(ks))}})
        pipeline = PipelineProcess(run_dir, cfg)
        try:
            pipeline.wait_event("wyoming_listening", timeout_s=180)
            pipeline.wait_event("stage_up", stage_name="transcribe_cpu", timeout_s=180)
            one_step(pipeline, prompts, 1, 2, 0.0)  # warm the audio path up
            rows: dict[int, list[dict]] = {k: [] for k in ks}
            for run in range(args.runs):
                for k in ks:
                    rows[k].append(one_step(pipeline, prompts, k, args.turns, args.pause_s))
                    print(json.dumps({"run": run + 1, **rows[k][-1]}), flush=True)
        finally:
            pipeline.stop()
    table = [medians(rows[k]) for k in ks]
    sustained = max((r["sources"] for r in table if r["p95_ms"] <= args.target_ms and not r["unanswered"]), default=0)
    print(f"{'K':>3} {'p50':>6} {'p95':>6} {'max':>6} {'WER':>5} {'cores':>6} {'/source':>8}")
    for r in table:
        print(f"{r['sources']:>3} {r['p50_ms']:>6.0f} {r['p95_ms']:>6.0f} {r['max_ms']:>6.0f} {r['wer']:>5.1f} "
              f"{r['cpu_cores']:>6.2f} {r['cpu_per_source']:>8.3f}")
    print(f"largest K with p95 <= {args.target_ms:g} ms: {sustained}")
    OUT.mkdir(exist_ok=True)
    (OUT / "capacity.json").write_text(json.dumps({"original_config_ms": anchor_ms, "table": table,
                                                   "sustained_sources": sustained, "runs": rows}, indent=1))
    try:
        plot(table, args.target_ms, anchor_ms, OUT / "capacity.png")
    except ImportError:
        print("bench: no matplotlib, no plot (.venv/bin/pip install -e '.[bench]')")


if __name__ == "__main__":
    main()
