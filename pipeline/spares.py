"""The preloaded spares behind each stage (`supervisor.spares`, `supervisor.spares_per_stage`).

Which spare a crash takes (one standing by, else the one preloading longest), when its slot is
filled again, and how a spare that keeps failing backs off. Bookkeeping only: the supervisor
spawns, signals and logs.
"""

from __future__ import annotations

from pipeline import topology
from pipeline.lifecycle import StageState
from pipeline.policy import Backoff
from pipeline.procs import StageProcess


class Spares:
    def __init__(self, procs: dict[str, StageProcess], stages: list[str], per_stage: int, backoff: Backoff) -> None:
        self.slots = {name: [StageProcess(name, proc.argv, start_at=None, standby=True) for _ in range(per_stage)]
                      for name, proc in procs.items() if topology.base_stage(name) in stages}
        self._failures = {name: 0 for name in self.slots}
        self._backoff = backoff

    def all(self) -> list[StageProcess]:
        return [spare for slots in self.slots.values() for spare in slots]

    def of(self, stage: str) -> list[StageProcess]:
        return self.slots.get(stage, [])

    def free_slot(self, stage: str) -> StageProcess | None:
        """A slot with no process (a restarted supervisor adopts a survivor into it)."""
        return next((p for p in self.of(stage) if p.popen is None), None)

    def take(self, dead: StageProcess, now: float, refill_after_s: float) -> StageProcess | None:
        """The spare that replaces `dead`, its slot given a new spare due in `refill_after_s`; None
        when none is alive."""
        slots = self.of(dead.name)
        alive = sorted((n for n, p in enumerate(slots) if p.alive),
                       key=lambda n: (slots[n].state is not StageState.STANDBY, slots[n].spawned_at))
        if not alive:
            return None
        spare = slots[alive[0]]
        slots[alive[0]] = StageProcess(dead.name, dead.argv, start_at=now + refill_after_s, standby=True)
        spare.standby, spare.restarts, spare.spawned_at, spare.last_heartbeat = False, dead.restarts, now, now
        spare.ready_reported = False
        return spare

    def ready(self, spare: StageProcess) -> None:
        spare.ready_reported, self._failures[spare.name] = True, 0

    def failed(self, spare: StageProcess, now: float) -> None:
        """Never given up on: the next one comes after a backoff that grows while they keep failing."""
        self._failures[spare.name] += 1
        spare.popen, spare.state = None, StageState.DOWN
        spare.start_at = now + self._backoff.delay_s(self._failures[spare.name])

    def states(self) -> dict[str, list[str]]:
        return {name: [p.state.value for p in slots] for name, slots in self.slots.items()}
