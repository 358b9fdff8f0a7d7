"""Dispatcher stage: the worker pool's broker (the ZeroMQ guide's load-balancing pattern).

`python -m stages.dispatch`. Every lane's VAD sends its utterances to a device class (the
supervisor's route: GPU first, CPU when no GPU worker is healthy); the dispatcher holds them and
gives each to a free worker of that class (pipeline/pool.py decides which). Workers connect a
DEALER to its ROUTER and send back their credit, their transcripts (forwarded to the sink) and
their turn hints (forwarded to the VAD of the utterance's lane). Remote workers connect to a
second ROUTER on tcp, with CURVE (`transcribe.pool`).

It keeps nothing durable: after its own restart the VADs send every unacknowledged utterance
again (a new route epoch) and the workers announce themselves with their next heartbeat.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from pathlib import Path

from pipeline import frames, metrics, topology
from pipeline.cli import stage_main
from pipeline.config import PipelineConfig
from pipeline.logs import get_logger
from pipeline.peers import addressed, split_addressed
from pipeline.pool import Pool
from pipeline.runner import CONTROL, Output, Stage
from pipeline.transport import PortSpec

LANES_KEPT = 1000  # utterance id -> lane, for the turn hints that come back
LOCAL, REMOTE = "pool", "pool_remote"


class DispatchStage(Stage):
    """Utterances from the VADs in, one free worker each; the workers' answers out where they go."""

    name = "dispatch"
    long_calls = False  # bookkeeping only: handled inline
    hears_owned = True  # which local workers the supervisor still has alive

    def __init__(self, run_dir: Path, workers: list[str], lanes: int, liveness_s: float,
                 remote: PortSpec | None = None) -> None:
        local = PortSpec("router", topology.pool(run_dir), bind=True, kinds=topology.POOL_KINDS)
        self.inputs: dict[str, PortSpec] = {LOCAL: local} | ({REMOTE: remote} if remote else {})
        self._job_ports: dict[str, tuple[str, int]] = {}  # input port -> (class, lane)
        for partial in (False, True):  # every final port before any partial one: finals first
            for lane in range(lanes):
                for worker in workers:
                    port = ("partial_" if partial else "") + worker + topology.lane_suffix(lane)
                    endpoint = (topology.partials if partial else topology.utterances)(run_dir, worker, lane)
                    self.inputs[port] = PortSpec("pull", endpoint, bind=False, hwm=1 if partial else 1000,
                                                 kinds=("utterance",))
                    self._job_ports[port] = (worker, lane)
        self.outputs = {LOCAL: local, **({REMOTE: remote} if remote else {}),
                        "results": PortSpec("push", topology.results(run_dir), bind=False)}
        # A hint the VAD is not there to take is dropped: it closes by silence then.
        self.outputs |= {f"hints{topology.lane_suffix(lane)}": PortSpec("push", topology.hints(run_dir, lane),
                                                                          bind=False, blocking=False)
                         for lane in range(lanes)}
        self.pool = Pool(liveness_s)
        self._workers = workers
        self._lanes: OrderedDict[str, int] = OrderedDict()
        self.log = get_logger()

    def handle(self, port: str, frame: frames.Frame) -> list[Output]:
        base, peer = split_addressed(port)
        if peer is not None:
            return self._from_worker(base, peer, frame)
        if port == CONTROL:
            return self._vanished(frame.pids) if isinstance(frame, frames.Owned) else []
        if isinstance(frame, frames.Utterance) and port in self._job_ports:
            return self._job(*self._job_ports[port], frame)
        return []

    def _job(self, pool: str, lane: int, utt: frames.Utterance) -> list[Output]:
        self._lanes[utt.utt_id] = lane
        while len(self._lanes) > LANES_KEPT:
            self._lanes.popitem(last=False)
        if not self.pool.add(pool, lane, utt):
            metrics.FRAMES_DROPPED.labels(self.name, "stale_partial" if utt.is_partial else "sent_again").inc()
        return self._assign()

    def _from_worker(self, port: str, peer: bytes, frame: frames.Frame) -> list[Output]:
        if isinstance(frame, frames.WorkerReady):
            known = peer in self.pool.seats
            self.pool.report(peer, frame, local=port == LOCAL)
            if not known:
                self.log.info("worker_joined", worker=frame.worker, pool=frame.pool, pid=frame.pid,
                              remote=port == REMOTE)
            return self._assign()
        if isinstance(frame, frames.Transcript):
            return [("results", frame)]
        if isinstance(frame, frames.TurnHint) and frame.utt_id in self._lanes:
            return [(f"hints{topology.lane_suffix(self._lanes[frame.utt_id])}", frame)]
        return []

    def tick(self, now_ns: int) -> list[Output]:
        return self._vanished(None)

    def _vanished(self, owned_pids: list[int] | None) -> list[Output]:
        for seat, reason in self.pool.vanished(owned_pids):
            finals = [j.utt.utt_id for j in seat.jobs if not j.utt.is_partial]
            metrics.POOL_REQUEUED.labels(seat.pool).inc(len(finals))
            self.log.warning("worker_vanished", worker=seat.worker, pid=seat.pid, requeued=finals, reason=reason,
                             remote=not seat.local)
        return self._assign()

    def _assign(self) -> list[Output]:
        out = [(addressed(LOCAL if self.pool.seats[peer].local else REMOTE, peer), job.utt)
               for peer, job in self.pool.assign()]
        metrics.QUEUE_DEPTH.labels(self.name).set(self.pool.queued())
        for pool in self._workers:
            seats = [s for s in self.pool.seats.values() if s.pool == pool]
            metrics.POOL_WORKERS.labels(pool, "free").set(sum(s.free for s in seats))
            metrics.POOL_WORKERS.labels(pool, "busy").set(sum(not s.free for s in seats))
        return out


def make_stage(cfg: PipelineConfig, args) -> DispatchStage:
    sup = cfg.supervisor
    return DispatchStage(cfg.resolved_run_dir(), topology.enabled_workers(cfg), topology.lane_count(cfg),
                         liveness_s=sup.heartbeat_liveness * sup.heartbeat_interval_s,
                         remote=topology.remote_pool_port(cfg))


def main() -> None:
    stage_main("dispatch", make_stage)


if __name__ == "__main__":
    sys.exit(main())
