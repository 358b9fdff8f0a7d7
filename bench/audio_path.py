"""The microphone's share of the turn latency: PortAudio's latency setting and block size.

    .venv/bin/python -m bench.audio_path [--plays 8]

On the private PulseAudio server (pipeline/harness/pulse.py), a click is played into the virtual
microphone while two recorders listen: a reference (10 ms blocks, latency "low": what FACTS.md
measured at ~22 ms from paplay to the recorder) and the candidate setting. Per setting it prints the
candidate's extra delay over the reference (median over `--plays` clicks, the first play dropped:
the path's first play is slow) and what a bare recorder with that setting costs in CPU (share of
one core over 20 s of silence, in a process of its own). The capture stage uses 512-sample blocks
(one Silero window at 16 kHz) and PortAudio's default latency.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile

from pipeline.harness.pulse import PulseServer

RATE = 16000
REFERENCE = ("low", 160)
SETTINGS = [("high", 512), ("low", 512), ("low", 256), ("low", 160)]
CPU_WINDOW_S = 20.0


def recorder_cpu(latency: str, blocksize: int) -> float:
    """In this process: a bare callback recorder's share of one core over CPU_WINDOW_S."""
    import sounddevice

    with sounddevice.InputStream(channels=1, samplerate=RATE, dtype="float32", blocksize=blocksize,
                                 latency=latency, callback=lambda *_: None):
        time.sleep(2.0)  # the stream settles before the window
        before, started = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
        time.sleep(CPU_WINDOW_S)  # the measurement window itself
        after = resource.getrusage(resource.RUSAGE_SELF)
    used = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return round(100 * used / (time.monotonic() - started), 2)


def extra_delay_ms(pulse: PulseServer, click: Path, latency: str, blocksize: int, plays: int) -> float:
    """Median of (candidate's first loud block - reference's first loud block) over `plays` clicks."""
    import sounddevice

    heard: dict[str, list[float]] = {"reference": [], "candidate": []}

    def listener(name: str):
        def callback(indata, *_):
            if np.abs(indata).max() > 0.1:
                heard[name].append(time.monotonic())
        return callback

    streams = [sounddevice.InputStream(channels=1, samplerate=RATE, dtype="float32", blocksize=size,
                                       latency=lat, callback=listener(name))
               for name, (lat, size) in (("reference", REFERENCE), ("candidate", (latency, blocksize)))]
    delays = []
    for stream in streams:
        stream.start()
    try:
        for play in range(plays + 1):
            heard["reference"].clear()
            heard["candidate"].clear()
            pulse.play(click)  # returns when the file has been played: the click (at 1 s) was heard
            if play and heard["reference"] and heard["candidate"]:
                delays.append(1000 * (heard["candidate"][0] - heard["reference"][0]))
    finally:
        for stream in streams:
            stream.close()
    return round(float(np.median(delays)), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plays", type=int, default=8)
    parser.add_argument("--cpu-of", nargs=2, metavar=("LATENCY", "BLOCKSIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cpu_of:  # the child process of the CPU measurement
        print(recorder_cpu(args.cpu_of[0], int(args.cpu_of[1])))
        return
    pulse = PulseServer()
    pulse.start()
    os.environ.update(pulse.env)  # sounddevice (PortAudio) finds the private server through these
    try:
        click = np.zeros(2 * RATE, dtype=np.float32)
        click[RATE:RATE + 800] = 0.5
        soundfile.write(pulse.dir / "click.wav", click, RATE)
        for latency, blocksize in SETTINGS:
            cpu = subprocess.run([sys.executable, "-m", "bench.audio_path", "--cpu-of", latency, str(blocksize)],
                                 capture_output=True, text=True, check=True).stdout.strip()
            print(json.dumps({"latency": latency, "blocksize": blocksize,
                              "extra_delay_ms_vs_10ms_blocks": extra_delay_ms(pulse, pulse.dir / "click.wav", latency,
                                                                              blocksize, args.plays),
                              "bare_recorder_cpu_percent": float(cpu)}), flush=True)
    finally:
        pulse.stop()


if __name__ == "__main__":
    main()
