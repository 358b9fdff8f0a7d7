"""pipeline/pool.py: who gets which job, by credit, with a fake clock."""

from __future__ import annotations

from pipeline.frames import Utterance, WorkerReady
from pipeline.pool import Pool

CPU, GPU = "transcribe_cpu", "transcribe_gpu"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def utt(utt_id: str, samples: int = 100, t: float = 0.0, **fields) -> Utterance:
    return Utterance(utt_id, 0.0, 1.0, t, 16000, b"\0" * 4 * samples, **fields)


def pool_with(*workers: tuple[bytes, str], clock: Clock | None = None) -> Pool:
    pool = Pool(liveness_s=3.0, clock=clock or Clock())
    for pid, (peer, cls) in enumerate(workers, 1):
        ready(pool, peer, cls, done=0, pid=pid)
    return pool


def ready(pool: Pool, peer: bytes, cls: str = CPU, done: int = 0, idle: bool = True, pid: int = 1) -> None:
    pool.report(peer, WorkerReady(peer.decode(), cls, pid, done, idle), local=True)


def given(pool: Pool) -> list[tuple[bytes, str]]:
    return [(peer, job.utt.utt_id) for peer, job in pool.assign()]


def test_each_job_goes_to_a_free_worker_and_a_busy_one_gets_nothing_until_its_credit_comes():
    pool = pool_with((b"a", CPU), (b"b", CPU))
    for n in range(3):
        pool.add(CPU, 0, utt(f"u{n}"))
    assert given(pool) == [(b"a", "u0"), (b"b", "u1")]  # u2 waits: both are busy
    ready(pool, b"a", done=0, idle=True)  # a heartbeat sent before it took u0: still busy
    assert given(pool) == []
    ready(pool, b"b", done=1)
    assert given(pool) == [(b"b", "u2")]


def test_finals_go_before_partials_and_only_the_newest_partial_of_a_lane_is_kept():
    pool = pool_with((b"a", CPU))
    pool.add(CPU, 0, utt("p", is_partial=True, samples=10))
    pool.add(CPU, 0, utt("p", is_partial=True, samples=20))  # newer: replaces the first
    pool.add(CPU, 0, utt("f"))
    assert given(pool) == [(b"a", "f")]
    ready(pool, b"a", done=1)
    [(peer, job)] = pool.assign()
    assert job.utt.is_partial and len(job.utt.pcm) == 80


def test_a_final_that_finds_every_worker_busy_goes_to_one_decoding_a_partial_which_cuts_it_short():
    pool = pool_with((b"a", CPU))
    pool.add(CPU, 0, utt("p", is_partial=True))
    assert given(pool) == [(b"a", "p")]
    pool.add(CPU, 0, utt("f1"))
    pool.add(CPU, 0, utt("f2"))
    assert given(pool) == [(b"a", "f1")]  # once: f2 waits for a credit
    ready(pool, b"a", done=2)
    assert given(pool) == [(b"a", "f2")]


def test_a_final_goes_to_the_worker_that_decoded_its_speculative_copy_when_free():
    pool = pool_with((b"a", CPU), (b"b", CPU))
    pool.add(CPU, 0, utt("x"))
    pool.add(CPU, 0, utt("u", speculative=True))
    assert given(pool) == [(b"a", "x"), (b"b", "u")]
    ready(pool, b"a", done=1)
    ready(pool, b"b", done=1)
    pool.add(CPU, 0, utt("u", samples=200))
    assert given(pool) == [(b"b", "u")]


def test_classes_are_served_by_their_own_workers_only():
    pool = pool_with((b"g", GPU), (b"c", CPU))
    pool.add(GPU, 0, utt("u1"))
    pool.add(GPU, 0, utt("u2"))
    assert given(pool) == [(b"g", "u1")]  # the CPU worker is free but not routed to


def test_a_re_send_is_dropped_while_queued_or_in_a_live_workers_hands_and_moves_with_the_route():
    pool = pool_with((b"a", CPU))
    assert pool.add(CPU, 0, utt("u1")) and not pool.add(CPU, 0, utt("u1"))
    assert given(pool) == [(b"a", "u1")]
    assert not pool.add(CPU, 0, utt("u1"))  # in a's hands
    pool.add(GPU, 0, utt("u2"))
    assert pool.add(CPU, 0, utt("u2")) and list(pool.finals[GPU]) == []  # rerouted: moved
    pool.add(CPU, 0, utt("u3", speculative=True, samples=10))
    pool.add(CPU, 0, utt("u3", speculative=True, samples=20))  # a newer copy replaces the queued one
    pool.add(CPU, 0, utt("u4", is_partial=True))
    pool.add(CPU, 0, utt("u4"))  # its final makes the partial stale
    assert [(j.utt.utt_id, len(j.utt.pcm)) for j in pool.finals[CPU]] == [("u2", 400), ("u3", 80), ("u4", 400)]
    assert pool.partials == {} and not pool.add(CPU, 0, utt("u4", is_partial=True))


def test_a_vanished_worker_gives_its_unfinished_finals_back_first_and_a_silent_one_expires():
    clock = Clock()
    pool = pool_with((b"a", CPU), (b"b", CPU), clock=clock)
    pool.add(CPU, 0, utt("u1"))
    pool.add(CPU, 0, utt("u2"))
    pool.add(CPU, 0, utt("u3"))
    assert given(pool) == [(b"a", "u1"), (b"b", "u2")]
    [(gone, why)] = pool.vanished(owned_pids=[2])  # a's process (pid 1) is no longer the supervisor's
    assert (gone.peer, why) == (b"a", "not_owned") and [j.utt.utt_id for j in pool.finals[CPU]] == ["u1", "u3"]
    clock.now = 3.5
    assert [(s.peer, why) for s, why in pool.vanished()] == [(b"b", "silent")]  # silent past liveness
    assert [j.utt.utt_id for j in pool.finals[CPU]] == ["u2", "u1", "u3"]


def test_a_worker_first_heard_mid_job_by_a_restarted_dispatcher_is_busy_until_it_reports_done():
    pool = Pool(liveness_s=3.0, clock=Clock())
    ready(pool, b"a", done=7, idle=False)  # busy with a job the previous dispatcher gave it
    pool.add(CPU, 0, utt("u1"))
    assert given(pool) == []
    ready(pool, b"a", done=8, idle=True)
    assert given(pool) == [(b"a", "u1")]
