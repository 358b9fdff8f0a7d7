"""Which spare replaces a crashed stage, and when its slot is filled again (pipeline/spares.py)."""

from __future__ import annotations

from pipeline.lifecycle import StageState
from pipeline.policy import Backoff
from pipeline.procs import StageProcess
from pipeline.spares import Spares


class Running:
    """Stands in for a live Popen."""
    def __init__(self, pid: int) -> None:
        self.pid, self.returncode = pid, None

    def poll(self):
        return self.returncode


def spares(per_stage: int = 2) -> Spares:
    procs = {name: StageProcess(name, ["python", "-m", f"stages.{name}"]) for name in ("vad", "vad.1", "sink")}
    return Spares(procs, ["vad"], per_stage, Backoff(0.1, 30.0, rng=lambda: 1.0))


def running(spare: StageProcess, pid: int, state: StageState, spawned_at: float) -> StageProcess:
    spare.popen, spare.state, spare.spawned_at = Running(pid), state, spawned_at
    return spare


def test_every_lane_of_a_listed_stage_gets_its_spares_and_other_stages_none():
    assert {name: len(slots) for name, slots in spares().slots.items()} == {"vad": 2, "vad.1": 2}
    assert spares().of("sink") == []


def test_a_crash_takes_the_spare_standing_by_first_and_its_slot_is_refilled_later():
    pool = spares()
    first, second = pool.of("vad")
    running(first, 11, StageState.STARTING, spawned_at=1.0)  # older, but still preloading
    running(second, 12, StageState.STANDBY, spawned_at=2.0)
    dead = StageProcess("vad", ["python", "-m", "stages.vad"], restarts=3)
    taken = pool.take(dead, now=10.0, refill_after_s=0.5)
    assert taken is second and not taken.standby and taken.restarts == 3 and not taken.ready_reported
    assert pool.of("vad")[0] is first and pool.of("vad")[1].popen is None and pool.of("vad")[1].start_at == 10.5
    assert pool.take(dead, now=11.0, refill_after_s=0.5) is first  # none standing by: the one preloading
    assert pool.take(dead, now=12.0, refill_after_s=0.5) is None    # none alive: a cold start


def test_the_oldest_of_two_standing_by_goes_first():
    pool = spares()
    first, second = pool.of("vad")
    running(first, 11, StageState.STANDBY, spawned_at=5.0)
    running(second, 12, StageState.STANDBY, spawned_at=3.0)
    assert pool.take(StageProcess("vad", []), now=10.0, refill_after_s=0.0) is second


def test_a_failing_spare_backs_off_more_each_time_until_one_is_ready():
    pool = spares(per_stage=1)
    [spare] = pool.of("sink") or pool.of("vad")
    running(spare, 11, StageState.STARTING, 0.0)
    pool.failed(spare, now=100.0)
    assert spare.popen is None and spare.state is StageState.DOWN and spare.start_at == 100.1
    pool.failed(spare, now=100.0)
    assert spare.start_at == 100.2
    pool.ready(spare)
    pool.failed(spare, now=100.0)
    assert spare.start_at == 100.1  # a spare that got ready resets the backoff
    assert pool.free_slot("vad") is spare and pool.states() == {"vad": ["down"], "vad.1": ["down"]}
