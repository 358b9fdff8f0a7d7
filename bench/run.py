"""Latency and accuracy benchmark: the original configuration against LUXA as shipped, in one run.

    .venv/bin/python -m bench.run [--limit 80] [--out bench/out] [--no-pipeline]

(a) "original": plain faster-whisper as the original request used it: `base`, int8 on the CPU,
    beam 5, best_of 5, temperature 0, the full 30 s window, language fr.
(b) "luxa": the engine as shipped (config.yaml's transcribe section), same model and threads.
Both run on the same prompts, alternating, in this process. Then the whole pipeline
(`python supervisor.py --source`) plays the same prompts at real-time pace, as a microphone
would, and a subscriber measures VAD close -> transcript received. Prints one table, writes
results.json and latency.png to --out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from bench.corpus import ensure_installed, load_prompts
from bench.original import load_original, transcribe_original
from bench.wer import corpus_wer
from pipeline.audio import load_audio
from pipeline.config import load_config
from pipeline.transcription.engine import Engine

ROOT = Path(__file__).resolve().parents[1]


def pick(prompts: list, limit: int, max_s: float) -> list:
    """Evenly spaced over the sorted corpus, so a subset is not all `conf-*` or all `vm-*`."""
    usable = [p for p in prompts if load_audio(p.path, 600).size / 16000 <= max_s]
    step = max(1, len(usable) // limit)
    return usable[::step][:limit]


def setting(text: str) -> tuple[str, object]:
    """An argparse type for `KEY=VALUE` (the value read as YAML: 0.9, null, true): one config field
    set for a benchmark run, so a rule's thresholds can be A/B-tested without editing config.yaml."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key.strip(), yaml.safe_load(value)


def stats(latencies_s: list[float]) -> dict:
    ms = sorted(x * 1000 for x in latencies_s)
    return {"p50_ms": round(statistics.median(ms)), "p95_ms": round(float(np.percentile(ms, 95))),
            "max_ms": round(ms[-1]), "n": len(ms)}


def run_offline(prompts: list, cfg) -> dict:
    original = load_original(cfg.models_cache_dir(), cfg.transcribe.cpu.cpu_threads)
    luxa = Engine(cfg.transcribe.cpu, cfg.transcribe, cfg.models_cache_dir())
    luxa.load()
    luxa.warm_up()
    rows = {"original": [], "luxa": []}
    for i, prompt in enumerate(prompts):
        audio = load_audio(prompt.path, 600)
        for name in (("original", "luxa") if i % 2 == 0 else ("luxa", "original")):
            started = time.perf_counter()
            if name == "original":
                text = "".join(s.text for s in transcribe_original(original, audio))
            else:
                text = luxa.transcribe(audio).text
            rows[name].append({"prompt": prompt.name, "ref": prompt.text, "hyp": text.strip(),
                               "latency_s": time.perf_counter() - started, "audio_s": audio.size / 16000})
        print(f"\r  offline {i + 1}/{len(prompts)}", end="", file=sys.stderr)
    print(file=sys.stderr)
    return rows


def summarise(rows: list[dict]) -> dict:
    rtf = sum(r["latency_s"] for r in rows) / sum(r["audio_s"] for r in rows)
    return {"wer_pct": round(corpus_wer([(r["ref"], r["hyp"]) for r in rows]), 1),
            **stats([r["latency_s"] for r in rows]), "rtf": round(rtf, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=80, help="number of prompts (evenly spaced)")
    parser.add_argument("--max-s", type=float, default=15.0, help="skip prompts longer than this (s)")
    parser.add_argument("--config", type=Path, default=ROOT / "config.yaml")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    parser.add_argument("--no-pipeline", action="store_true", help="offline comparison only")
    args = parser.parse_args(argv)
    ensure_installed("fr")
    cfg = load_config(args.config)
    prompts = pick(load_prompts("fr"), args.limit, args.max_s)
    print(f"bench: {len(prompts)} French prompts, mean {statistics.mean(load_audio(p.path, 600).size / 16000 for p in prompts):.1f} s",
          file=sys.stderr)
    offline = run_offline(prompts, cfg)
    results = {"prompts": len(prompts), "original": summarise(offline["original"]), "luxa": summarise(offline["luxa"])}
    if not args.no_pipeline:
        from bench.pipeline_run import run_pipeline

        args.out.mkdir(parents=True, exist_ok=True)
        results["pipeline"] = run_pipeline(prompts, args.config, args.out / "pipeline.log")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({**results, "rows": offline}, indent=1, ensure_ascii=False))
    print_table(results)
    plot(offline, results.get("pipeline"), args.out / "latency.png")
    return 0


def print_table(results: dict) -> None:
    o, l = results["original"], results["luxa"]
    print(f"\n{'':28}{'WER %':>8}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}{'RTF':>8}")
    for name, r in (("original (beam 5, 30 s)", o), ("LUXA engine as shipped", l)):
        print(f"{name:28}{r['wer_pct']:>8}{r['p50_ms']:>9}{r['p95_ms']:>9}{r['max_ms']:>9}{r['rtf']:>8}")
    print(f"{'ratio original / LUXA':28}{'':>8}{o['p50_ms'] / l['p50_ms']:>9.2f}{o['p95_ms'] / l['p95_ms']:>9.2f}"
          f"{o['max_ms'] / l['max_ms']:>9.2f}{o['rtf'] / l['rtf']:>8.2f}")
    p = results.get("pipeline")
    if p:
        c = p["close_to_received"]
        print(f"\npipeline, real-time playback: VAD close -> subscriber p50 {c['p50_ms']} ms, p95 {c['p95_ms']} ms, "
              f"max {c['max_ms']} ms over {c['n']} utterances; WER {p['wer_pct']} %")
        print(f"start to ready {p['start_to_ready_s']} s; peak RSS MiB: "
              + ", ".join(f"{k} {v}" for k, v in p["rss_mib"].items()))


def plot(offline: dict, pipeline: dict | None, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("bench: matplotlib is not installed (pip install -e .[bench]); no plot", file=sys.stderr)
        return
    series = {name: [r["latency_s"] * 1000 for r in rows] for name, rows in offline.items()}
    if pipeline:
        series["pipeline close→received"] = pipeline["latencies_ms"]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    bins = np.linspace(0, max(max(v) for v in series.values()), 40)
    for name, values in series.items():
        ax.hist(values, bins=bins, alpha=0.55, label=f"{name} (p50 {statistics.median(values):.0f} ms)")
    ax.set_xlabel("latency per utterance (ms)")
    ax.set_ylabel("utterances")
    ax.set_title("LUXA vs original faster-whisper (base, int8, 2 CPU threads), French prompts")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"bench: plot saved to {path}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
