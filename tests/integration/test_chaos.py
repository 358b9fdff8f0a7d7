"""The CI version of `python -m bench.chaos`: real stages SIGKILLed while real speech plays.

Driven by kills, not by the length of the audio: the bundled French recording loops (as fast as
the pipeline takes it) until every stage has been killed KILLS_PER_STAGE times, a kill every
0.7-1.4 s; then SIGTERM lets the VAD drain. The GPU worker runs the CPU model here, so the
supervisor's switch to the CPU worker and back is exercised too, and the CPU class is a pool of
two workers, so the dispatcher's hand-over of a dead member's job to the other is too. The victims are every active
stage, every preloaded spare and the supervisor itself (restarted as systemd would, on the same
run dir). The test's subscriber catches up through the sink's history (pipeline/history.py) on
what was published while it was reconnecting to a restarted supervisor's new sink. What was said
is the same recording played once without kills: its finals, once per lap, are what every lap
must publish (bench/said.py, by words), so speech a VAD died in the middle of counts too.
"""

from __future__ import annotations

import json

import pytest

from bench.chaos import chaos_config, everything, run_chaos
from bench.said import compare_said
from pipeline.testmode import TEST_RECORDING

KILLS_PER_STAGE = 3
CPU_WORKERS = 2
VICTIMS = everything(CPU_WORKERS)
TIMEOUT_S = 600  # a bound for a stuck run, not a pace: a healthy one ends as soon as the kills are done


@pytest.mark.slow
def test_random_sigkills_lose_and_duplicate_nothing_that_was_said(run_dir):
    clean_dir = run_dir / "clean"
    clean_dir.mkdir(mode=0o700)
    clean = run_chaos(TEST_RECORDING, clean_dir, chaos_config(clean_dir, cpu_workers=CPU_WORKERS), max_kills=0,
                      timeout_s=TIMEOUT_S)
    assert clean.exit_code == 0 and clean.texts, clean.summary()
    cfg = chaos_config(run_dir, cpu_workers=CPU_WORKERS)
    cfg["vad"] = {"max_pending": 8}  # backpressure keeps the backlog, and so the final drain, short
    report = run_chaos(TEST_RECORDING, run_dir, cfg, interval_s=(0.7, 1.4), stages=VICTIMS,
                       kills_per_stage=KILLS_PER_STAGE, seed=1, timeout_s=TIMEOUT_S)
    summary = report.summary()
    print(json.dumps(summary))
    assert not report.timed_out, f"fewer kills than asked for within {TIMEOUT_S} s: {summary}"
    assert report.exit_code == 0, summary
    assert all(summary["kills_by_stage"].get(s, 0) >= KILLS_PER_STAGE for s in VICTIMS), summary
    # Only READY processes are killed, and the run stops only once every stage is back: every
    # kill was answered by a replacement that reported READY.
    assert summary["unrecovered"] == 0, summary
    assert summary["utterances_closed"] > 0 and summary["transcripts_published"] > 0, summary
    assert report.lost == [] and report.duplicated == [], f"{summary}\n{what_happened(run_dir, report.lost)}"
    # A lap begun may be cut short by the stop: one lap more than begun, its unplayed rest ignored.
    said = compare_said(clean.texts * (report.laps + 1), report.texts, stopped_early=True)
    assert said.lost == [] and said.duplicated == [], (said, clean.texts, report.texts)


def what_happened(run_dir, lost: list[str]) -> str:
    """The log lines that tell a lost utterance's story, and how the run ended (for CI output)."""
    lines = (run_dir / "pipeline.log").read_text().splitlines()
    ending = ("drain_timeout", "stage_failed", "route_changed", "supervisor_stopping", "utterances_sent_again")
    told = [line for line in lines if any(u in line for u in lost[:3])]
    return "\n".join(told[-40:] + [line for line in lines if any(e in line for e in ending)][-30:])
