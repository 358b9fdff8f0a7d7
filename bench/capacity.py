"""Capacity: how many rooms one machine serves, K Wyoming satellites speaking at once.

    .venv/bin/python -m bench.capacity [--sources 1,2,4,8] [--turns 6] [--runs 3]
    .venv/bin/python -m bench.capacity --cpu-workers 2 --cpu-threads 1 --label 2-workers

LUXA runs as shipped, with `audio.device: none` and `servers.wyoming`. For each K, K clients
(Home Assistant satellites, each its own source) stream Debian French prompts at real-time pace,
one turn per prompt, `--pause-s` apart, all at once. Per K: audio-stop -> transcript (p50 / p95 /
max over every turn), WER, and the CPU time of every pipeline process (supervisor, stages,
spares) over the K clients' wall time, in all and per source (share of one core). The largest K
with p95 <= `--target-ms` is what this machine sustains. Plain faster-whisper with the original
request's settings decodes the same prompts first: the machine-speed anchor for every figure.
`--cpu-workers N` runs a pool of N CPU workers (`transcribe.cpu.workers`), each with
`--cpu-threads`; with `--remote-worker` they run on a second host instead (a network namespace
joined by a veth pair, `supervisor.py --role worker`, tcp + CURVE; needs root), and their CPU
counts in the figures too. Medians over the runs; `bench/out/capacity[-LABEL].json`, and
`bench/out/capacity.png` with matplotlib: one curve per saved configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.corpus import ensure_installed, load_prompts
from bench.idle_cpu import cpu_s, processes
from bench.original import load_original, original_p50_ms
from bench.run import pick
from bench.wer import corpus_wer
from pipeline.audio import load_audio
from pipeline.harness.pipeline_process import PipelineProcess, pid_alive, pipeline_config
from pipeline.harness.netns import Hosts, remote_workers, stop
from pipeline.harness.waiting import wait_until
from pipeline.harness.wyoming_client import pcm16, transcribe
from pipeline.keys import generate
from pipeline.topology import lane_stage

OUT = Path(__file__).resolve().parent / "out"
PORT = 10393
REMOTE_PORT = 5599
RATE = 16000


def one_step(pipeline: PipelineProcess, prompts: list, sources: int, turns: int, pause_s: float,
             elsewhere: Callable[[], dict[str, int]] = dict) -> dict:
    """K clients at once, each `turns` prompts of its own at real-time pace. `elsewhere`: the
    pids of the pipeline's processes on the other host, whose CPU counts too."""
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

    pids = processes(pipeline) | elsewhere()
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


def remote_pids(supervisor, log: Path) -> dict[str, int]:
    """The worker host's supervisor, workers and spares, from its log."""
    found = {"remote supervisor": supervisor.pid}
    for line in log.read_text(errors="replace").splitlines():
        if '"stage_spawned"' in line or '"spare_spawned"' in line or '"spare_promoted"' in line:
            event = json.loads(line)
            found[f"remote {event['stage_name']} {event['pid']}"] = event["pid"]
    return found


def medians(rows: list[dict]) -> dict:
    keys = ("p50_ms", "p95_ms", "max_ms", "wer", "cpu_cores", "cpu_per_source")
    return {"sources": rows[0]["sources"], "runs": len(rows),
            **{k: statistics.median(r[k] for r in rows if r[k] is not None) for k in keys},
            "unanswered": sum(r["turns"] - r["answered"] for r in rows)}


def plot(saved: dict[str, dict], target_ms: float, path: Path) -> None:
    """One p95 and one CPU-per-source curve per saved configuration (`capacity[-LABEL].json`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (lat, cpu) = plt.subplots(1, 2, figsize=(10, 4))
    ks = sorted({r["sources"] for run in saved.values() for r in run["table"]})
    for label, run in saved.items():
        k, table = [r["sources"] for r in run["table"]], run["table"]
        name = f"{label} (original config {run['original_config_ms']:g} ms)"
        lat.plot(k, [r["p95_ms"] for r in table], "o-", label=f"p95, {name}")
        cpu.plot(k, [r["cpu_per_source"] for r in table], "s-", label=label)
    lat.axhline(target_ms, color="grey", linestyle="--", label=f"{target_ms:g} ms")
    lat.set(xlabel="sources speaking at once (K)", ylabel="audio-stop -> transcript p95 (ms)", xscale="log", xticks=ks)
    cpu.set(xlabel="sources speaking at once (K)", ylabel="CPU per source (cores)", xscale="log", xticks=ks)
    for ax in (lat, cpu):
        ax.set_xticklabels(ks)
        ax.minorticks_off()
        ax.legend(fontsize=7)
    fig.suptitle("LUXA capacity, base int8, on 2 cores")
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
    parser.add_argument("--cpu-workers", type=int, default=1, help="transcribe.cpu.workers: the CPU pool's size")
    parser.add_argument("--cpu-threads", type=int, default=2, help="transcribe.cpu.cpu_threads of each worker")
    parser.add_argument("--label", default="1 worker", help="names this configuration's file and curve")
    parser.add_argument("--remote-worker", action="store_true",
                        help="the CPU workers on a second host (network namespace, tcp + CURVE; needs root)")
    args = parser.parse_args()
    ks = [int(k) for k in args.sources.split(",")]
    ensure_installed("fr")
    prompts = pick(load_prompts("fr"), max(ks) * args.turns, args.max_s)
    anchor_ms = original_p50_ms(load_original(), prompts[:8])
    print(f"capacity: {len(prompts)} prompts; original config {anchor_ms:g} ms per prompt (p50 of 8)", flush=True)
    with tempfile.TemporaryDirectory(prefix="luxa-capacity-") as tmp:
        run_dir = Path(tmp)
        run_dir.chmod(0o700)
        workers = {"workers": args.cpu_workers, "cpu_threads": args.cpu_threads}
        hosts = Hosts(own_a=False) if args.remote_worker else None
        transcribe_cfg = {"cpu": workers} if hosts is None else {
            "gpu": {"enabled": False}, "cpu": {"workers": 0},
            "pool": {"listen": f"tcp://{hosts.address_a}:{REMOTE_PORT}", "curve": generate(run_dir / "keys")}}
        cfg = pipeline_config(run_dir, audio={"device": "none"},
                              servers={"wyoming": {"uri": f"tcp://127.0.0.1:{PORT}", "max_clients": max(16, max(ks))}},
                              transcribe=transcribe_cfg)
        pipeline = PipelineProcess(run_dir, cfg)
        remote, elsewhere = None, dict
        try:
            pipeline.wait_event("wyoming_listening", timeout_s=180)
            if hosts is not None:
                remote = remote_workers(hosts, run_dir / "host-b", transcribe_cfg["pool"]["listen"],
                                        run_dir / "keys" / "server.key", run_dir / "keys" / "client-1.key_secret",
                                        cpu=workers)
                elsewhere = lambda: remote_pids(remote, run_dir / "host-b" / "worker.log")  # noqa: E731
                wait_until(lambda: len(pipeline.find("worker_joined", remote=True)) >= args.cpu_workers, 180,
                           what="the remote workers joined")
            for member in range(args.cpu_workers if hosts is None else 0):
                pipeline.wait_event("stage_up", stage_name=lane_stage("transcribe_cpu", member), timeout_s=180)
            one_step(pipeline, prompts, 1, 2, 0.0)  # warm the audio path up
            rows: dict[int, list[dict]] = {k: [] for k in ks}
            for run in range(args.runs):
                for k in ks:
                    rows[k].append(one_step(pipeline, prompts, k, args.turns, args.pause_s, elsewhere))
                    print(json.dumps({"run": run + 1, **rows[k][-1]}), flush=True)
        finally:
            pipeline.stop()
            if remote is not None:
                stop(remote)
            if hosts is not None:
                hosts.close()
    table = [medians(rows[k]) for k in ks]
    sustained = max((r["sources"] for r in table if r["p95_ms"] <= args.target_ms and not r["unanswered"]), default=0)
    print(f"{'K':>3} {'p50':>6} {'p95':>6} {'max':>6} {'WER':>5} {'cores':>6} {'/source':>8}")
    for r in table:
        print(f"{r['sources']:>3} {r['p50_ms']:>6.0f} {r['p95_ms']:>6.0f} {r['max_ms']:>6.0f} {r['wer']:>5.1f} "
              f"{r['cpu_cores']:>6.2f} {r['cpu_per_source']:>8.3f}")
    print(f"largest K with p95 <= {args.target_ms:g} ms: {sustained}")
    OUT.mkdir(exist_ok=True)
    slug = "" if args.label == "1 worker" else "-" + "".join(c if c.isalnum() else "-" for c in args.label)
    (OUT / f"capacity{slug}.json").write_text(json.dumps(
        {"label": args.label, "cpu_workers": args.cpu_workers, "cpu_threads": args.cpu_threads,
         "original_config_ms": anchor_ms, "table": table, "sustained_sources": sustained, "runs": rows}, indent=1))
    saved = {(run := json.loads(f.read_text())).get("label", "1 worker"): run for f in sorted(OUT.glob("capacity*.json"))}
    try:
        plot(saved, args.target_ms, OUT / "capacity.png")
    except ImportError:
        print("bench: no matplotlib, no plot (.venv/bin/pip install -e '.[bench]')")


if __name__ == "__main__":
    main()
