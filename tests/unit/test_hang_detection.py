"""How the supervisor finds a stage to replace: hung (three ways) or over its memory limit."""

from __future__ import annotations

import subprocess
import sys
import time

from pipeline.config import parse_config
from pipeline.harness.waiting import wait_until
from pipeline.procs import StageProcess, rss_mib
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


def test_a_stage_over_its_memory_limit_is_replaced(tmp_path):
    # A real process (this test's python) stands in for the stage: its RSS is far above 1 MiB.
    cfg = parse_config({"supervisor": {"max_rss_mb": {"transcribe_cpu": 1, "sink": 100_000}}})
    sup = Supervisor(cfg, tmp_path, print_transcripts=False, check=None)
    me = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        wait_until(lambda: rss_mib(me.pid) > 1, 10, what="the child to be resident")
        over = StageProcess("transcribe_cpu", [], popen=me, state="running")
        under = StageProcess("sink", [], popen=me, state="running")
        assert sup._memory_reason(over) == "memory_limit"
        assert sup._memory_reason(under) is None
    finally:
        me.kill()
        me.wait()
