"""Recorded input frames replayed into one real stage process; outputs compared with goldens.

Recordings come from tests/data/make_recordings.py; goldens change only with --update-golden.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.recording import read_frames
from pipeline.transcription.hallucination import normalise

ROOT = Path(__file__).resolve().parents[2]
RECORDINGS = ROOT / "tests" / "data" / "recordings"


def run_stage(module: str, recording: Path, out: Path, *args: str) -> list:
    """pipecat's run_test, across a process boundary: frames in, frames out."""
    cmd = [sys.executable, "-m", f"stages.{module}", "--replay", str(recording), "--out", str(out), *args]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return read_frames(out), proc.stderr


def summarise(port: str, frame) -> dict:
    """Key fields only: ids minted per run and timings are not part of the contract."""
    row = {"port": port, "kind": frame.KIND}
    if frame.KIND == "utterance":
        row.update(duration_s=round(frame.end_s - frame.start_s, 1), is_partial=frame.is_partial,
                   speculative=frame.speculative, speculated=frame.speculated_samples > 0)
    elif frame.KIND == "transcript":
        row.update(text=normalise(frame.text), model_used=frame.model_used, is_speech=frame.is_speech)
    elif frame.KIND in ("ack", "drained"):
        row.update({k: getattr(frame, k) for k in ("utt_id", "utterances") if hasattr(frame, k)})
    return row


def check_golden(name: str, rows: list[dict], update: bool) -> None:
    golden = RECORDINGS / f"{name}.golden.json"
    if update:
        golden.write_text(json.dumps(rows, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    assert rows == json.loads(golden.read_text(encoding="utf-8"))


def test_vad_cuts_one_utterance_from_recorded_capture(tmp_path, update_golden):
    out, _ = run_stage("vad", RECORDINGS / "issue2_vad_in.msgpack", tmp_path / "out.msgpack")
    rows = [summarise(p, f) for p, f in out]
    # Interim audio every 400 ms while speech goes on, a speculative copy when speech pauses, then the
    # final one; no sink acknowledges it, so the VAD never reports itself drained.
    final = rows[-1]
    assert (final["port"], final["is_partial"], final["speculative"]) == ("transcribe_cpu", False, False)
    interim = [(r["port"], r["is_partial"], r["speculative"]) for r in rows[:-1]]
    assert set(interim) == {("partial_transcribe_cpu", True, False), ("transcribe_cpu", False, True)}
    assert final["speculated"]  # the last pause was the end: its speculative copy stands
    assert len({f.utt_id for _, f in out}) == 1
    check_golden("issue2_vad_out", rows, update_golden)


@pytest.mark.slow
def test_transcriber_replays_a_recorded_french_utterance(tmp_path, update_golden):
    out, _ = run_stage("transcribe", RECORDINGS / "issue2_transcribe_in.msgpack", tmp_path / "out.msgpack",
                       "--worker", "transcribe_cpu")
    rows = [summarise(p, f) for p, f in out]
    assert "cette conférence est pleine" in rows[0]["text"]
    check_golden("issue2_transcribe_out", rows, update_golden)


def test_sink_publishes_once_acks_every_result_and_survives_a_malformed_frame(tmp_path, update_golden):
    out, stderr = run_stage("sink", RECORDINGS / "issue2_sink_in.msgpack", tmp_path / "out.msgpack")
    rows = [summarise(p, f) for p, f in out]
    # The transcript goes out publicly and privately (test mode, front doors); every result is
    # acknowledged privately, the duplicate and the non-speech one included; the duplicate is
    # repeated privately only (a front door that re-sent its turn waits for it).
    assert [(r["port"], r["kind"]) for r in rows] == [("public", "transcript"), ("internal", "transcript"),
                                                      ("internal", "ack"), ("internal", "transcript"),
                                                      ("internal", "ack"), ("internal", "ack")]
    assert '"event": "frame_malformed"' in stderr and "not msgpack" in stderr
    assert '"event": "duplicate_dropped"' in stderr
    check_golden("issue2_sink_out", rows, update_golden)
