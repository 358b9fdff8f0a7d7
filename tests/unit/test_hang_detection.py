"""How the supervisor finds a stage to replace: hung (three ways) or over its memory limit.

Detection is a pure function of what was observed (pipeline/policy.py); the supervisor acts on it.
"""

from __future__ import annotations

import subprocess
import sys

from pipeline.config import parse_config
from pipeline.harness.waiting import wait_until
from pipeline.lifecycle import StageState
from pipeline.policy import hang_reason, memory_reason
from pipeline.procs import rss_mib

SUP = parse_config({"supervisor": {"heartbeat_interval_s": 1.0, "heartbeat_liveness": 3, "max_busy_s": 5,
                                   "start_timeout_s": 20}}).supervisor
RUNNING = StageState.RUNNING


def test_silence_past_the_liveness_window_is_a_hang():
    assert hang_reason(RUNNING, since_spawn_s=60, since_heartbeat_s=2.9, busy_for_s=0, cfg=SUP) is None
    assert hang_reason(RUNNING, since_spawn_s=60, since_heartbeat_s=3.1, busy_for_s=0, cfg=SUP) == "heartbeat_missed"


def test_a_waiting_spare_is_given_the_liveness_window_of_its_slower_heartbeat():
    standby = StageState.STANDBY  # spare_heartbeat_interval_s: 5 (the default)
    assert hang_reason(standby, since_spawn_s=60, since_heartbeat_s=14.9, busy_for_s=0, cfg=SUP) is None
    assert hang_reason(standby, since_spawn_s=60, since_heartbeat_s=15.1, busy_for_s=0, cfg=SUP) == "heartbeat_missed"


def test_a_model_call_that_never_returns_is_a_hang_even_while_heartbeats_flow():
    # The runner heartbeats from its main thread while the call runs in a worker thread, and
    # reports since when it is busy: an endless loop in a model call shows up here.
    assert hang_reason(RUNNING, since_spawn_s=60, since_heartbeat_s=0.1, busy_for_s=6, cfg=SUP) == "busy_too_long"
    assert hang_reason(RUNNING, since_spawn_s=60, since_heartbeat_s=0.1, busy_for_s=1, cfg=SUP) is None


def test_a_stage_that_never_gets_ready_times_out():
    starting = StageState.STARTING
    assert hang_reason(starting, since_spawn_s=19, since_heartbeat_s=19, busy_for_s=0, cfg=SUP) is None
    assert hang_reason(starting, since_spawn_s=21, since_heartbeat_s=21, busy_for_s=0, cfg=SUP) == "start_timeout"


def test_a_stage_over_its_memory_limit_is_replaced():
    assert memory_reason(rss_mib=120.0, limit_mib=100) == "memory_limit"
    assert memory_reason(rss_mib=80.0, limit_mib=100) is None
    assert memory_reason(rss_mib=80.0, limit_mib=None) is None


def test_resident_memory_is_read_from_a_real_process():
    # A real process (this test's python) stands in for a stage: its RSS is far above 1 MiB.
    me = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        wait_until(lambda: rss_mib(me.pid) > 1, 10, what="the child to be resident")
        assert memory_reason(rss_mib(me.pid), parse_config({}).supervisor.max_rss_mb["transcribe_cpu"]) is None
        assert memory_reason(rss_mib(me.pid), 1) == "memory_limit"
    finally:
        me.kill()
        me.wait()
    assert rss_mib(me.pid) == 0.0  # gone: nothing resident
