"""Utterances held until the sink acknowledges them: spooled, routed to the active worker, sent again.

The VAD's at-least-once delivery, whatever the utterance came from (its own segmenter, or a front
door such as the Wyoming server): each one is written to the spool before it is sent, sent to
the worker the supervisor routes to, sent again when the route changes (a new epoch: a worker or
the sink restarted), when it never left (no worker connected) or when it waited too long; it is
forgotten only when the sink's `ack` comes. The sink drops the duplicates this makes.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline import frames, metrics
from pipeline.durable import Spool
from pipeline.logs import get_logger

Output = tuple[str, frames.Frame]


@dataclass
class Pending:
    """An utterance awaiting its acknowledgement, and when and in which route epoch it was last sent."""
    utterance: frames.Utterance
    sent_ns: int = 0
    sent_epoch: int = -1
    left: bool = False  # the last send was handed to ZeroMQ (a send with no worker connected is not)


class Delivery:
    """The pending utterances of one stage, their spool, and the route they are sent on."""

    def __init__(self, spool_dir: Path, stage: str, workers: list[str],
                 clock: Callable[[], int] = time.monotonic_ns) -> None:
        self.stage = stage
        self.workers = set(workers)  # the output ports a route may name
        self.pending: OrderedDict[str, Pending] = OrderedDict()
        self.active: str | None = None  # the routed worker's port name; None until the first Route
        self.epoch = -1
        self.spool: Spool | None = None
        self._spool_dir = spool_dir
        self._clock = clock
        self._depth = metrics.QUEUE_DEPTH.labels(stage)
        self.log = get_logger()

    def load(self) -> Iterator[tuple[str, bytes]]:
        """Open the spool and restore its utterances; yields the entries that are not utterances."""
        self.spool = Spool(self._spool_dir)
        for key, blob in self.spool.load():
            if not blob:  # a marker of the stage's own (the VAD's end of stream), not an utterance
                yield key, blob
                continue
            try:
                utt = frames.from_bytes(blob)
            except frames.FrameDecodeError as err:
                metrics.BAD_INPUT.labels(self.stage, "spool_corrupt").inc()
                self.log.error("spool_entry_unreadable", key=key, reason=str(err))
                self.spool.remove(key)
                continue
            self.pending[utt.utt_id] = Pending(utt)
        self._depth.set(len(self.pending))

    @property
    def routed(self) -> str | None:
        """The worker to send to now; None while none is routed (or the route names no port of ours)."""
        return self.active if self.active in self.workers else None

    def __len__(self) -> int:
        return len(self.pending)

    def __contains__(self, utt_id: str) -> bool:
        return utt_id in self.pending

    def add(self, utt: frames.Utterance) -> list[Output]:
        """Spool it (before anything says it exists), hold it, and send it if a worker is routed."""
        self.spool.put(utt.utt_id, frames.to_bytes(utt, self.stage))
        self.pending[utt.utt_id] = Pending(utt)
        self._depth.set(len(self.pending))
        return self._send(self.pending[utt.utt_id])

    def ack(self, utt_id: str) -> bool:
        """The sink handled it: forget it. False when it was not pending (a duplicate ack)."""
        if self.pending.pop(utt_id, None) is None:
            return False
        self.spool.remove(utt_id)
        self._depth.set(len(self.pending))
        return True

    def route(self, route: frames.Route) -> list[Output]:
        """A new worker, or a new epoch of the same one: everything pending goes again."""
        if route.epoch == self.epoch and route.active == self.active:
            return []
        self.log.info("route_changed", active=route.active, epoch=route.epoch, pending=len(self.pending))
        self.active, self.epoch = route.active, route.epoch
        return [out for p in self.pending.values() for out in self._send(p)]

    def sent(self, frame: frames.Frame) -> None:
        """A final handed to ZeroMQ; one the runner had to drop (no worker connected) goes again at
        the next tick instead of waiting for a route change or the resend delay."""
        if (isinstance(frame, frames.Utterance) and not (frame.is_partial or frame.speculative)
                and frame.utt_id in self.pending):
            self.pending[frame.utt_id].left = True

    def resend_late(self, now_ns: int, limit_s: float) -> list[Output]:
        """Send again what never left, and what has waited longer than `limit_s` for its transcript."""
        late = [p for p in self.pending.values()
                if p.sent_epoch >= 0 and (not p.left or now_ns - p.sent_ns > limit_s * 1e9)]
        if late:
            self.log.info("utterances_sent_again", count=len(late), never_left=sum(not p.left for p in late))
        return [out for p in late for out in self._send(p)]

    def end_seqs(self) -> Iterator[int]:
        return (p.utterance.end_seq for p in self.pending.values())

    def _send(self, pending: Pending) -> list[Output]:
        if self.routed is None:
            return []  # no worker is ready yet: it stays pending until the first Route
        if pending.sent_epoch >= 0:
            metrics.UTTERANCES_RESENT.labels(self.stage).inc()
        pending.sent_ns, pending.sent_epoch, pending.left = self._clock(), self.epoch, False
        return [(self.active, pending.utterance)]
