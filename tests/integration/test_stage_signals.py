"""A stage process stops when it is told to, whatever it is waiting for."""

from __future__ import annotations

import signal

import pytest

from pipeline.harness.lone_stage import LoneStage
from pipeline.lifecycle import StageState

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("standby", [True, False])
def test_sigterm_stops_a_stage_at_once_not_at_the_end_of_its_wait(run_dir, standby):
    # Waits of 600 s: a spare polls until its next heartbeat, an active stage as long as nothing comes.
    cfg = {"supervisor": {"spare_heartbeat_interval_s": 600, "heartbeat_interval_s": 600, "heartbeat_liveness": 1}}
    stage = LoneStage(run_dir, "sink", *(["--standby"] if standby else []), config=cfg,
                      until=StageState.STANDBY if standby else None)
    try:
        stage.proc.send_signal(signal.SIGTERM)
        # Exiting at all before the deadline (not a speed claim) means the signal woke the wait.
        assert stage.proc.wait(timeout=60) == 0, stage.log()
    finally:
        stage.close()
