"""Wyoming: LUXA against wyoming-faster-whisper, measured by wyoming-bench, in the same run.

    .venv/bin/pip install -e '.[bench]'          # wyoming-bench (the third-party benchmark)
    .venv/bin/python -m bench.wyoming_peer [--count 24] [--runs 3] [--clients 4]

The peer is what a Home Assistant user installs today: `wyoming-faster-whisper` 3.8.1, in its own
virtual environment (`.venv-peers`, made on first use), given the same `base` model files, int8,
2 threads, beam 5 (its default on x86), French. LUXA runs as shipped with `audio.device: none`
and `servers.wyoming`. Both serve at once (the idle one costs ~3 % of a core); each run measures
both, one after the other, with wyoming-bench's own client and WER (`bench_stt_server`,
`--mode both`, its default 1024-sample chunks sent as fast as the socket takes them, 0.5 s of
trailing silence; its time runs from the first byte sent, so for a recording sent at once it is
audio-stop -> transcript plus the sending). Then, as Home Assistant streams a microphone, one
client and then `--clients` clients at once stream the prompts at real-time pace (this repo's
wyoming client, pipeline/harness/wyoming_client.py): audio-stop -> transcript over their turns.
Medians over the runs, and the peer / LUXA ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

from bench.corpus import ensure_installed, load_prompts
from bench.run import pick
from pipeline.audio import load_audio
from pipeline.config import PipelineConfig
from pipeline.harness.pipeline_process import ROOT, PipelineProcess, pipeline_config
from pipeline.harness.waiting import wait_until
from pipeline.harness.wyoming_client import describe, pcm16, transcribe
from pipeline.transcription.models import resolve_model

PEERS = ROOT / ".venv-peers"
PEER = "wyoming-faster-whisper==3.8.1"
PEER_PORT, LUXA_PORT = 10391, 10392
RATE = 16000


def peer_venv() -> Path:
    """The peer's own environment (its faster-whisper pin is its own business)."""
    executable = PEERS / "bin" / "wyoming-faster-whisper"
    if not executable.exists():
        print(f"bench: installing {PEER} into {PEERS}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(PEERS)], check=True)
        subprocess.run([str(PEERS / "bin" / "pip"), "install", "-q", PEER], check=True)
    return executable


def write_corpus(prompts, directory: Path) -> None:
    """wyoming-bench's layout: NAME.wav (the prompt's own 8 kHz file) next to NAME.txt."""
    for prompt in prompts:
        samples, rate = soundfile.read(prompt.path, dtype="int16")
        soundfile.write(directory / f"{prompt.path.stem}.wav", samples, rate, subtype="PCM_16")
        (directory / f"{prompt.path.stem}.txt").write_text(prompt.text, encoding="utf-8")


def start_peer(data_dir: Path, model_dir: Path) -> subprocess.Popen:
    proc = subprocess.Popen([str(peer_venv()), "--uri", f"tcp://127.0.0.1:{PEER_PORT}", "--model", str(model_dir),
                             "--data-dir", str(data_dir), "--download-dir", str(data_dir), "--device", "cpu",
                             "--compute-type", "int8", "--cpu-threads", "2", "--beam-size", "5", "--language", "fr",
                             "--local-files-only"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_until(lambda: _answers(PEER_PORT) or proc.poll() is not None, 120, what="wyoming-faster-whisper to listen")
    if proc.poll() is not None:
        raise SystemExit(f"wyoming-faster-whisper exited: {proc.stderr.read().decode()[-2000:]}")
    return proc


def _answers(port: int) -> bool:
    try:
        asyncio.run(describe(port))
        return True
    except OSError:
        return False


def measure(port: int, samples) -> dict:
    """wyoming-bench's own measurement of one server: both modes, one round of every sample."""
    from wyoming.asr import Transcribe
    from wyoming_bench.stt.bench import bench_stt_server
    from wyoming_bench.stt.reporting import summarize_stt_mode

    info = asyncio.run(describe(port))
    found = asyncio.run(bench_stt_server("127.0.0.1", port, samples, ["non_streaming", "streaming"],
                                         Transcribe(language="fr"), rounds=1, warmup=1, verbose=False,
                                         chunk_samples=1024, chunk_delay=0.0, connect_timeout=10, read_timeout=120,
                                         info=info, trailing_silence=0.5))
    out = {"streaming_advertised": bool(info.asr and info.asr[0].supports_transcript_streaming)}
    for mode in ("non_streaming", "streaming"):
        summary = summarize_stt_mode(found, mode)
        out[mode] = {"ok": summary["ok"], "fail": summary["fail"], "wer": summary["wer"],
                     "median_ms": _ms(summary["total"]["median"]), "p95_ms": _ms(summary["total"]["p95"])}
    return out


def concurrent(port: int, prompts, clients: int) -> dict:
    """`clients` clients at once, each streaming its share of the prompts at real-time pace, with
    0.5 s of trailing silence (as wyoming-bench appends): audio-stop -> transcript over all turns."""
    audio = [np.concatenate([load_audio(p.path, 600, RATE), np.zeros(RATE // 2, dtype=np.float32)]) for p in prompts]

    async def client(share):
        return [await transcribe(port, pcm16(a), RATE, realtime=True) for a in share]

    async def everyone():
        return await asyncio.gather(*(client(audio[i::clients]) for i in range(clients)))

    turns = [t for share in asyncio.run(everyone()) for t in share]
    waits = sorted(t.stop_to_transcript_s * 1000 for t in turns if t.stop_to_transcript_s is not None)
    return {"turns": len(turns), "answered": len(waits), "median_ms": round(statistics.median(waits)),
            "p95_ms": round(float(np.percentile(waits, 95)))}


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=24)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--max-s", type=float, default=20.0, help="longest prompt used")
    args = parser.parse_args()
    try:
        from wyoming_bench.stt.corpus import load_corpus
    except ImportError:
        raise SystemExit("bench: wyoming-bench is missing: .venv/bin/pip install -e '.[bench]'") from None
    ensure_installed("fr")
    prompts = pick(load_prompts("fr"), args.count, args.max_s)
    model_dir = resolve_model("base", PipelineConfig().models_cache_dir())
    with tempfile.TemporaryDirectory(prefix="luxa-wy-") as tmp:
        tmp = Path(tmp)
        (tmp / "corpus").mkdir()
        (tmp / "run").mkdir(mode=0o700)
        write_corpus(prompts, tmp / "corpus")
        samples = load_corpus(tmp / "corpus")
        peer = start_peer(tmp, Path(model_dir))
        luxa = PipelineProcess(tmp / "run", pipeline_config(tmp / "run", audio={"device": "none"},
                                                             servers={"wyoming": f"tcp://127.0.0.1:{LUXA_PORT}"}))
        try:
            luxa.wait_event("wyoming_listening", timeout_s=180)
            luxa.wait_event("stage_up", stage_name="transcribe_cpu", timeout_s=180)
            runs = []
            for run in range(args.runs):
                row = {"run": run + 1}
                for name, port in (("wyoming-faster-whisper", PEER_PORT), ("luxa", LUXA_PORT)):
                    started = time.monotonic()
                    row[name] = measure(port, samples)
                    row[name]["live"] = concurrent(port, prompts, 1)
                    row[name]["concurrent"] = concurrent(port, prompts, args.clients)
                    row[name]["wall_s"] = round(time.monotonic() - started)
                print(json.dumps(row), flush=True)
                runs.append(row)
        finally:
            luxa.stop()
            peer.terminate()
            peer.wait(10)
    print(json.dumps({"summary": summarise(runs)}, indent=1))


def summarise(runs: list[dict]) -> dict:
    """Medians over the runs of each figure, and the peer / LUXA ratio of each run's figures."""
    def median(path):
        values = [_dig(r, path) for r in runs if _dig(r, path) is not None]
        return statistics.median(values) if values else None

    out = {}
    for server in ("wyoming-faster-whisper", "luxa"):
        out[server] = {f"{mode}.{field}": median((server, mode, field)) for mode in ("non_streaming", "streaming")
                       for field in ("median_ms", "p95_ms", "wer", "fail")}
        out[server] |= {f"{k}.{f}": median((server, k, f)) for k in ("live", "concurrent") for f in ("median_ms", "p95_ms")}
        out[server]["streaming_advertised"] = runs[-1][server]["streaming_advertised"]
    for mode in ("live", "concurrent"):
        ratios = [_dig(r, ("wyoming-faster-whisper", mode, "median_ms")) / _dig(r, ("luxa", mode, "median_ms"))
                  for r in runs if _dig(r, ("luxa", mode, "median_ms"))]
        out[f"ratio_median.{mode}"] = round(statistics.median(ratios), 2) if ratios else None
    for mode in ("non_streaming", "streaming"):
        ratios = [_dig(r, ("wyoming-faster-whisper", mode, "median_ms")) / _dig(r, ("luxa", mode, "median_ms"))
                  for r in runs if _dig(r, ("luxa", mode, "median_ms")) and _dig(r, ("wyoming-faster-whisper", mode, "median_ms"))]
        out[f"ratio_median.{mode}"] = round(statistics.median(ratios), 2) if ratios else None
    return out


def _dig(row: dict, path: tuple):
    for key in path:
        row = row.get(key) if isinstance(row, dict) else None
    return row


if __name__ == "__main__":
    main()
