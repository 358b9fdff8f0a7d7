"""bench/chaos.py's accounting of a pool member's kill: the pool serves on while another member is up."""

from __future__ import annotations

from datetime import datetime, timezone

from bench.chaos import Kill, _others_serving


def event(stage: str, pid: int, at_s: float) -> dict:
    return {"stage_name": stage, "pid": pid, "timestamp": datetime.fromtimestamp(at_s, timezone.utc).isoformat()}


def test_a_members_kill_interrupts_nothing_while_another_member_of_its_pool_is_up():
    kill = Kill("transcribe_cpu.1", 5, at_wall_s=1000.0)
    ups = [event("transcribe_cpu", 3, 990.0), event("transcribe_cpu.1", 5, 991.0), event("transcribe_gpu", 4, 992.0)]
    assert _others_serving(kill, ups, failures=[]) == ["transcribe_cpu"]  # the GPU class is another pool
    assert _others_serving(kill, ups, failures=[event("transcribe_cpu", 3, 995.0)]) == []  # it was down too
    back = [*ups, event("transcribe_cpu", 7, 998.0)]  # ... and its replacement up again before the kill
    assert _others_serving(kill, back, failures=[event("transcribe_cpu", 3, 995.0)]) == ["transcribe_cpu"]
