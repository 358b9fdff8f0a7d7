"""The worker pool's bookkeeping: which worker may take which job now.

The ZeroMQ guide's load-balancing broker, with credit: a worker says after every job and with
every heartbeat how many jobs it has finished and whether it is idle (`WorkerReady`); it is free
when idle and it has finished every job sent to it. Pure: the dispatcher (stages/dispatch.py)
feeds it what arrived and sends what `assign` returns.

- Work never goes onto a busy worker, with one exception: a final that finds no free worker goes
  to one decoding a partial, which then cuts the partial short (the worker's runner preempts).
- Finals and speculative copies go first, oldest first; a partial only to a worker left free,
  the newest of each lane (an older one is stale).
- A final goes to the worker that decoded its speculative copy when that one is free: the answer
  is kept there, so it costs no second decode.
- A worker that vanishes (its process no longer owned by the supervisor, or silent for
  `liveness_s`) gives its unfinished finals back to the front of the queue. The VAD's re-sends
  (after a restart, or a wait too long) are recognised and dropped while the first copy is queued
  or in a live worker's hands.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pipeline import frames

AFFINITY_KEPT = 64  # utterances whose speculative copy's worker is remembered


@dataclass(frozen=True)
class Job:
    utt: frames.Utterance
    lane: int  # which VAD it came from: a turn hint about it goes back there

    @property
    def key(self) -> tuple[str, bool, int]:
        """What makes two sends the same job (a speculative copy grows with each pause)."""
        return self.utt.utt_id, self.utt.speculative, len(self.utt.pcm)


@dataclass
class Seat:
    """One connected worker, as its credit reports describe it."""
    peer: bytes                # its identity on the dispatcher's ROUTER
    worker: str
    pool: str
    pid: int
    local: bool                # on this machine's ipc socket: supervised, so checked against Owned
    sent: int                  # jobs sent to it (counted from its own `done` when first heard)
    done: int
    idle: bool
    last_seen: float
    jobs: deque[Job] = field(default_factory=deque)  # sent, not finished yet, oldest first
    given_at: float = 0.0      # when it was last given a job: the free seat given one longest ago goes first

    @property
    def free(self) -> bool:
        return self.idle and self.done >= self.sent

    @property
    def on_partial_only(self) -> bool:
        return len(self.jobs) == 1 and self.jobs[0].utt.is_partial


class Pool:
    """Queues per device class (`transcribe_gpu`, `transcribe_cpu`) and the seats that serve them."""

    def __init__(self, liveness_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.liveness_s = liveness_s
        self._clock = clock
        self.seats: dict[bytes, Seat] = {}
        self.finals: dict[str, deque[Job]] = {}
        self.partials: dict[tuple[str, int], Job] = {}  # (pool, lane) -> the newest partial
        self._affinity: OrderedDict[str, bytes] = OrderedDict()  # utt_id -> who decoded its copy

    def add(self, pool: str, lane: int, utt: frames.Utterance) -> bool:
        """Queue a job; False when it is a re-send of one queued or in a live worker's hands."""
        job = Job(utt, lane)
        if utt.is_partial:
            if self._final_known(utt.utt_id):
                return False  # its final is already on its way: the partial is stale
            self.partials[(pool, lane)] = job
            return True
        if any(j.key == job.key for seat in self.seats.values() for j in seat.jobs):
            return False
        if any(j.key == job.key for j in self.finals.get(pool, ())):
            return False
        for queue in self.finals.values():
            # Gone from where it waited: a re-send on another class (the route changed) moves it, and
            # a newer copy, or the final, supersedes a queued copy.
            for stale in [j for j in queue if j.key == job.key or (j.utt.utt_id == utt.utt_id and j.utt.speculative)]:
                queue.remove(stale)
        if not utt.speculative:
            self.partials = {k: j for k, j in self.partials.items() if j.utt.utt_id != utt.utt_id}
        self.finals.setdefault(pool, deque()).append(job)
        return True

    def report(self, peer: bytes, ready: frames.WorkerReady, local: bool) -> None:
        """A worker's credit (and proof of life)."""
        now = self._clock()
        seat = self.seats.get(peer)
        if seat is None:  # a new worker, or one that served a dispatcher before this one
            seat = self.seats[peer] = Seat(peer, ready.worker, ready.pool, ready.pid, local, ready.done, ready.done,
                                           ready.idle, now)
        for _ in range(min(max(0, ready.done - seat.done), len(seat.jobs))):
            seat.jobs.popleft()
        seat.done, seat.sent = max(seat.done, ready.done), max(seat.sent, ready.done)
        seat.idle, seat.last_seen = ready.idle, now

    def vanished(self, owned_pids: Iterable[int] | None = None) -> list[tuple[Seat, str]]:
        """Forget the workers that are gone, with why (`silent`, `not_owned`); their unfinished
        finals go back first in their queue. `owned_pids`: the processes the supervisor has alive
        (a local worker not among them died)."""
        now, owned = self._clock(), set(owned_pids) if owned_pids is not None else None
        gone = [(s, "silent" if now - s.last_seen > self.liveness_s else "not_owned") for s in self.seats.values()
                if now - s.last_seen > self.liveness_s or (owned is not None and s.local and s.pid not in owned)]
        for seat, _ in gone:
            del self.seats[seat.peer]
            queue = self.finals.setdefault(seat.pool, deque())
            for job in reversed(seat.jobs):
                if not job.utt.is_partial and not any(j.key == job.key for j in queue):
                    queue.appendleft(job)
        return gone

    def assign(self) -> list[tuple[bytes, Job]]:
        """The jobs to send now, each to its worker's identity."""
        given = []
        for pool, queue in self.finals.items():
            while queue:
                seat = self._free_seat(pool, queue[0].utt.utt_id) or self._seat_on_partial(pool)
                if seat is None:
                    break
                given.append(self._give(seat, queue.popleft()))
        for key, job in sorted(self.partials.items(), key=lambda kv: kv[1].utt.t_closed_wall_s):
            seat = self._free_seat(key[0])
            if seat is not None:
                del self.partials[key]
                given.append(self._give(seat, job))
        return given

    def queued(self) -> int:
        return sum(len(q) for q in self.finals.values())

    def _free_seat(self, pool: str, utt_id: str | None = None) -> Seat | None:
        free = [s for s in self.seats.values() if s.pool == pool and s.free]
        preferred = self.seats.get(self._affinity.get(utt_id, b"")) if utt_id else None
        return preferred if preferred in free else min(free, key=lambda s: s.given_at, default=None)

    def _seat_on_partial(self, pool: str) -> Seat | None:
        return next((s for s in self.seats.values() if s.pool == pool and s.on_partial_only), None)

    def _give(self, seat: Seat, job: Job) -> tuple[bytes, Job]:
        seat.jobs.append(job)
        seat.sent += 1
        seat.idle, seat.given_at = False, self._clock()
        if job.utt.speculative:
            self._affinity[job.utt.utt_id] = seat.peer
            while len(self._affinity) > AFFINITY_KEPT:
                self._affinity.popitem(last=False)
        return seat.peer, job

    def _final_known(self, utt_id: str) -> bool:
        jobs = [*(j for q in self.finals.values() for j in q), *(j for s in self.seats.values() for j in s.jobs)]
        return any(j.utt.utt_id == utt_id and not j.utt.is_partial and not j.utt.speculative for j in jobs)
