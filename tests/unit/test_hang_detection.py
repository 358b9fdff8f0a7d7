"""The supervisor's three ways of finding a hung stage, on its own bookkeeping (no processes)."""

from __future__ import annotations

import time

from pipeline.config import parse_config
from pipeline.procs import StageProcess
from supervisor import Supervisor

CFG = parse_config({"supervisor": {"heartbeat_interval_s": 1.0, "heartbeat_liveness": 3, "max_busy_s": 5,
                                   "start_timeout_s": 20}})


def _proc(state: str, last_heartbeat: float, busy_since_ns: int = 0, spawned_at: float = 0.0) -> StageProcess:
    return StageProcess("transcribe_cpu", [], state=state, last_heartbeat=last_heartbeat,
                        busy_since_ns=busy_since_ns, spawned_at=spawned_at)


def test_silence_past_the_liveness_window_is_a_hang(tmp_path):
    sup = Supervisor(CFG, tmp_path, print_transcripts=False, check=None)
    assert sup._hang_reason(_proc("running", last_heartbeat=100.0), now=102.9) is None
    assert sup._hang_reason(_proc("running", last_heartbeat=100.0), now=103.1) == "heartbeat_missed"


def test_a_model_call_that_never_returns_is_a_hang_even_while_heartbeats_flow(tmp_path):
    # The runner heartbeats from its main thread while the call runs in a worker thread, and
    # reports since when it is busy: an endless loop in a model call shows up here.
    sup = Supervisor(CFG, tmp_path, print_transcripts=False, check=None)
    now = time.monotonic()
    stuck = _proc("running", last_heartbeat=now, busy_since_ns=time.monotonic_ns() - 6 * 10**9)
    busy = _proc("running", last_heartbeat=now, busy_since_ns=time.monotonic_ns() - 1 * 10**9)
    assert sup._hang_reason(stuck, now) == "busy_too_long"
    assert sup._hang_reason(busy, now) is None


def test_a_stage_that_never_gets_ready_times_out(tmp_path):
    sup = Supervisor(CFG, tmp_path, print_transcripts=False, check=None)
    assert sup._hang_reason(_proc("starting", last_heartbeat=0.0, spawned_at=100.0), now=119.0) is None
    assert sup._hang_reason(_proc("starting", last_heartbeat=0.0, spawned_at=100.0), now=121.0) == "start_timeout"
