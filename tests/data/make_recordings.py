"""Regenerate the stage recordings under tests/data/recordings by running the real stages.

    .venv/bin/python tests/data/make_recordings.py

capture (file source, fr-conf-full.wav + 0.5 s of silence) -> vad input;
vad output -> transcribe_cpu input; transcribe output + a duplicate + a malformed frame -> sink input.
Each recording is named after the issue that asked for it (issue 2: stage-level replay tests).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile
import yaml

from pipeline import frames
from pipeline.recording import RecordReader, RecordWriter

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "data" / "recordings"


def stage(module: str, config: Path, *args: str) -> None:
    subprocess.run([sys.executable, "-m", f"stages.{module}", "--config", str(config), *args], cwd=ROOT, check=True)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        audio, rate = soundfile.read(ROOT / "tests/data/audio/fr-conf-full.wav", dtype="int16")
        pad = np.zeros(rate // 2, dtype=np.int16)
        soundfile.write(tmp / "speech.wav", np.concatenate([pad, audio, pad]), rate)
        config = tmp / "config.yaml"
        config.write_text(yaml.safe_dump({"audio": {"source": str(tmp / "speech.wav"), "pace": "fast"}}))
        stage("capture", config, "--out", str(tmp / "capture.msgpack"))
        with RecordWriter(OUT / "issue2_vad_in.msgpack") as out:
            out.write("control", frames.encode(frames.Route("transcribe_cpu", 1), "supervisor"))
            for port, parts in RecordReader(tmp / "capture.msgpack"):
                out.write(port, parts)
        stage("vad", config, "--replay", str(OUT / "issue2_vad_in.msgpack"), "--out", str(tmp / "vad.msgpack"))
        with RecordWriter(OUT / "issue2_transcribe_in.msgpack") as out:
            for port, parts in RecordReader(tmp / "vad.msgpack"):
                if port == "transcribe_cpu":
                    out.write("utterances", parts)
        stage("transcribe", config, "--worker", "transcribe_cpu", "--replay",
              str(OUT / "issue2_transcribe_in.msgpack"), "--out", str(tmp / "transcribe.msgpack"))
        results = [parts for _, parts in RecordReader(tmp / "transcribe.msgpack")]
        non_speech = frames.Transcript("silence-1", "", "fr", [], "base", "cpu", "transcribe_cpu",
                                       1.0, 0.1, 0.1, False, 0.0)
        with RecordWriter(OUT / "issue2_sink_in.msgpack") as out:
            for parts in results + results:  # the duplicate a failover re-send produces
                out.write("results", parts)
            out.write("results", [b"transcript", b"\xc1 not msgpack"])
            out.write("results", frames.encode(non_speech, "transcribe_cpu"))


if __name__ == "__main__":
    main()
