"""StageRunner: the one loop every stage runs in.

Stages never touch ZeroMQ: they implement `handle(port, frame) -> list[Output]` (plus `produce`
for sources) and the runner owns sockets, heartbeats, signals, backpressure and record/replay.
Every stage call runs in a worker thread so heartbeats continue during model loads and
inference (wyoming-faster-whisper uses asyncio.to_thread for the same reason).
"""

from __future__ import annotations

import concurrent.futures
import os
import signal
import time
from collections import deque
from pathlib import Path
from typing import Callable

from pipeline import frames, metrics
from pipeline.exitcodes import ExitCode
from pipeline.frames import Frame, FrameDecodeError
from pipeline.lifecycle import StageFailed, StageStartError, StageState
from pipeline.logs import bind_process_context, get_logger
from pipeline.ownership import Ownership
from pipeline.peers import HandshakeLog, addressed, split_addressed
from pipeline.recording import RecordReader, RecordWriter
from pipeline.transport import ADDRESSED, Poller, PortSpec, Transport, ipc_endpoint, recv_parts, send

__all__ = ["CONTROL", "Output", "Stage", "StageFailed", "StageRunner", "StageStartError", "StageState"]
Output = tuple[str, Frame]
CONTROL = "control"  # output port to the supervisor; input port for Route/Stop
CONTROL_KINDS = (frames.Route.KIND, frames.Stop.KIND, frames.Activate.KIND, frames.Owned.KIND)
PREEMPT_CHECK_S = 0.01  # how often a running call for a less urgent input looks for a more urgent one


class Stage:
    """What every stage implements; the runner owns sockets, threads, signals and timing.

    A stage names its sockets as *ports*: `inputs` and `outputs` map a port name to a PortSpec
    (`"utterances"`, `"results"`, ...), and `CONTROL` is the supervisor. Hooks, by role:

    - required: `handle` (and `produce` for a source);
    - lifecycle: `preload` (heavy, no sockets) -> `start` (durable state) -> ... -> `begin_drain`,
      `drained` -> `close`;
    - flow control and timing: `accepts` (backpressure), `sent` (what left), `tick` (timers),
      `preempt` (cut a long call short).
    """

    name = "stage"
    inputs: dict[str, PortSpec] = {}
    outputs: dict[str, PortSpec] = {}
    is_source = False
    exhausted = False  # sources: nothing more will be produced
    wake_fd: int | None = None
    """Sources fed by a thread of their own (a server's clients): a file descriptor that becomes
    readable when something is ready. The runner then waits on it with the input sockets and calls
    `produce(0)` only when it is readable, instead of letting `produce` wait out the heartbeat
    interval while a frame on an input socket waits behind it."""
    last_seq = 0
    self_preempting: tuple[str, ...] = ()
    """Inputs whose next message, arriving while a call for this same input runs, calls `preempt`
    (a worker's one dispatcher socket: a busy worker is sent only a final that should cut its
    partial short)."""
    hears_owned = False
    """The supervisor's `Owned` frames (the pids it has alive) also go to `handle` on CONTROL (the
    dispatcher: a local worker missing from them died)."""
    long_calls = True
    """`handle`, `produce` and `tick` may run long (inference): they run in a worker thread, so
    heartbeats go on. A stage whose calls are always short sets False and they run inline:
    no thread handoff per frame, which is most of what listening to silence costs."""

    def preload(self) -> None:
        """Heavy set-up that needs no sockets and no shared state (imports, model load, warm-up).

        A spare process does this long before it is needed, so replacing a dead stage costs only `start`.
        """

    def start(self) -> None:
        """Open devices and read durable state; READY is published only after this returns."""

    def handle(self, port: str, frame: Frame) -> list[Output]:
        """One decoded frame read on input `port` (or CONTROL: Route); returns `(port, frame)`
        pairs to send, in order, on output ports (or CONTROL). Never raises for bad input:
        count it, log it, drop it. Raises StageFailed when the stage cannot go on."""
        return []

    def produce(self, max_wait_s: float) -> list[Output]:
        """Sources only: return within max_wait_s with whatever is ready."""
        return []

    def tick(self, now_ns: int) -> list[Output]:
        """Called once per heartbeat interval (timers, resends)."""
        return []

    def preempt(self) -> None:
        """A more urgent input is waiting while `handle` runs for a less urgent one: cut it short if you can."""

    def heartbeat_outputs(self, busy: bool) -> list[Output]:
        """Frames sent with every heartbeat once serving, also while a call runs (a worker's credit
        and liveness towards its dispatcher). Runs on the runner's thread: read state, nothing more."""
        return []

    def accepts(self, port: str) -> bool:
        """False = leave this input's messages queued for now (backpressure upstream)."""
        return True

    def sent(self, port: str, frame: Frame) -> None:
        """Called after a frame was handed to ZeroMQ (durable bookkeeping)."""

    def begin_drain(self) -> list[Output]:
        return []

    def drained(self) -> bool:
        return True

    def close(self) -> None:
        pass


def control_ports(run_dir: Path) -> tuple[PortSpec, PortSpec]:
    """(stage -> supervisor, supervisor -> stages); the supervisor binds both."""
    up = PortSpec("pub", ipc_endpoint(run_dir, "control_up"), bind=False)
    down = PortSpec("sub", ipc_endpoint(run_dir, "control_down"), bind=False,
                    subscribe=tuple(k.encode() for k in CONTROL_KINDS), kinds=CONTROL_KINDS)
    return up, down


class StageRunner:
    """Runs one Stage against live sockets (`run`) or a recording (`replay`)."""

    def __init__(self, stage: Stage, heartbeat_interval_s: float = 1.0, drain_timeout_s: float = 30.0,
                 clock: Callable[[], int] = time.monotonic_ns, record_path: Path | None = None,
                 spare_heartbeat_interval_s: float | None = None, orphan_grace_s: float = 30.0) -> None:
        self.stage = stage
        self.state = StageState.STARTING
        self._hb_ns = int(heartbeat_interval_s * 1e9)
        self._spare_hb_ns = int((spare_heartbeat_interval_s or heartbeat_interval_s) * 1e9)
        self._drain_timeout_ns = int(drain_timeout_s * 1e9)
        self._clock = clock
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=stage.name)
        self._busy_since_ns = 0
        self._next_hb_ns = 0
        self._outbox: deque[Output] = deque()
        self._stop_requested = False
        self._drain_deadline_ns = 0
        self._recorder = RecordWriter(record_path) if record_path else None
        self._log = get_logger()
        self._ownership = Ownership(orphan_grace_s, self._log)
        self._sockets: dict = {}
        self._signal_fd = -1  # signals' wake-up pipe, set by run()
        self._handshakes = HandshakeLog(self._log)  # CURVE client sockets: was the key admitted?
        self._frames_in, self._frames_out = metrics.Children(metrics.FRAMES_IN), metrics.Children(metrics.FRAMES_OUT)

    # -- live mode -----------------------------------------------------------------

    def run(self, run_dir: Path, standby: bool = False) -> int:
        """Serve until stopped; returns the process exit code.

        `standby`: a spare. It preloads, then waits (heartbeating) for an Activate addressed to its
        pid before it opens the stage's sockets, which the process it replaces held until it died.
        """
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.request_stop())
        # A signal also writes to this pipe, which every wait polls: a stop is seen at once, not at
        # the end of the wait (a spare waits up to its 5 s heartbeat interval).
        self._signal_fd, notify = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(notify)
        transport = Transport()
        try:
            self._open_control(transport, run_dir)
            code = self._guarded(self.stage.preload)
            if code is None and standby:
                self._set_state(StageState.STANDBY)
                if not self._wait_for_activation():
                    return ExitCode.CLEAN
                self._set_state(StageState.STARTING)
            if code is None:
                self._open_ports(transport)
                code = self._guarded(self.stage.start)
            if code is None:
                self._set_state(StageState.READY)
                code = self._serve()
            return code
        finally:
            self._finish(transport)

    def request_stop(self) -> None:
        self._stop_requested = True

    def _open_control(self, transport: Transport, run_dir: Path) -> None:
        up, down = control_ports(run_dir)
        self._sockets = {CONTROL: transport.open(up), "_control_down": transport.open(down)}

    def _open_ports(self, transport: Transport) -> None:
        specs = {**self.stage.inputs, **self.stage.outputs}
        for name, spec in specs.items():
            watch = self._handshakes.watcher(name) if spec.curve_client else None
            self._sockets[name] = transport.open(spec, before_connect=watch)
        by_priority = ("_control_down", *self.stage.inputs)
        self._port_of = {id(self._sockets[n]): n for n in by_priority}
        self._priority = {id(self._sockets[n]): rank for rank, n in enumerate(by_priority)}
        self._poller = Poller([self._sockets[n] for n in by_priority])
        if self._signal_fd >= 0:
            self._poller.add_fd(self._signal_fd)
        if self.stage.wake_fd is not None:
            self._poller.add_fd(self.stage.wake_fd)
        inputs = list(self.stage.inputs)  # for each input, the more urgent ones that may preempt its calls
        self._more_urgent = {n: [self._sockets[u] for u in inputs[:rank + (n in self.stage.self_preempting)]]
                             for rank, n in enumerate(inputs)}

    def _guarded(self, step: Callable[[], None]) -> int | None:
        """Run preload or start; a StageStartError becomes the exit code (None = go on)."""
        try:
            self._call(step)
        except StageStartError as err:
            # No GPU on a CPU-only machine is the normal case: the terminal shows warnings and up.
            log = self._log.info if err.exit_code == ExitCode.NO_GPU else self._log.error
            log("stage_start_failed", reason=str(err), exit_code=int(err.exit_code))
            return err.exit_code
        return None

    def _wait_for_activation(self) -> bool:
        """Heartbeat as a spare until Activate(our pid) arrives (True) or we are stopped (False)."""
        control = self._sockets["_control_down"]
        poller = Poller([control])
        poller.add_fd(self._signal_fd)
        while not self._stop_requested:
            now = self._clock()
            if now >= self._next_hb_ns:
                self._next_hb_ns = now + self._spare_hb_ns
                self._send_heartbeat()
            readable = poller.readable(max(0.0, (self._next_hb_ns - now) / 1e9))
            self._drain_signal_fd(readable)
            if control not in readable:
                continue
            frame = self._decode("_control_down", recv_parts(control))
            if isinstance(frame, frames.Stop):
                return False
            if isinstance(frame, frames.Owned):
                self._on_owned(frame)
            if isinstance(frame, frames.Activate) and frame.pid == os.getpid():
                bind_process_context(restart_count=frame.restart_count)
                self._log.info("spare_activated")
                self._next_hb_ns = 0  # from now on at the active stages' pace
                return True
        return False

    def _serve(self) -> int:
        try:
            self._loop()
        except StageFailed as err:
            return self._cannot_continue(err)
        return ExitCode.CLEAN

    def _cannot_continue(self, err: StageFailed) -> int:
        self._log.error("stage_cannot_continue", reason=str(err), exit_code=int(err.exit_code))
        return err.exit_code

    def _loop(self) -> None:
        while True:
            now = self._clock()
            if now >= self._next_hb_ns:
                self._on_heartbeat(now)
            if self._stop_requested and self.state is not StageState.DRAINING:
                self._begin_drain(now)
            if self._outbox:
                self._flush_outbox()
                continue
            if self.state is StageState.DRAINING and (self.stage.drained() or now >= self._drain_deadline_ns):
                if not self.stage.drained():
                    self._log.warning("drain_timeout")
                return
            self._receive_or_produce(max(0.0, (self._next_hb_ns - self._clock()) / 1e9))

    def _on_heartbeat(self, now: int) -> None:
        self._next_hb_ns = now + self._hb_ns
        self._send_heartbeat()
        self._handshakes.check()
        self._outbox.extend(self._stage_call(self.stage.tick, now))

    def _begin_drain(self, now: int) -> None:
        self._set_state(StageState.DRAINING)
        self._drain_deadline_ns = now + self._drain_timeout_ns
        self._outbox.extend(self._call(self.stage.begin_drain))

    def _receive_or_produce(self, wait_s: float) -> None:
        """One message per pass, from the most urgent readable port (control, then inputs in order).

        Re-polling before every message is what lets finals overtake partials that queued first.
        """
        produce = self.stage.is_source and not self.stage.exhausted and self.state is not StageState.DRAINING
        for name in self.stage.inputs:
            self._poller.enable(self._sockets[name], self.stage.accepts(name))
        wake = self.stage.wake_fd
        if wake is not None:
            self._poller.enable(wake, produce)
        readable = self._poller.readable(0.0 if produce and wake is None else wait_s)
        self._drain_signal_fd(readable)
        woken = wake is not None and wake in readable
        sockets = [s for s in readable if not isinstance(s, int)]
        if sockets:
            sock = min(sockets, key=lambda s: self._priority[id(s)])
            self._dispatch(self._port_of[id(sock)], recv_parts(sock))
        if produce and (wake is None or woken):
            self._outbox.extend(self._stage_call(self.stage.produce, 0.0 if woken else wait_s))

    def _drain_signal_fd(self, readable: list) -> None:
        if self._signal_fd in readable:
            try:
                os.read(self._signal_fd, 512)
            except BlockingIOError:
                pass

    def _dispatch(self, port: str, parts: list[bytes]) -> None:
        if self._recorder:
            self._recorder.write(port, parts)
        spec = self.stage.inputs.get(port)
        peer = None
        if spec is not None and spec.pattern in ADDRESSED:
            peer, parts = parts[0], parts[1:]  # ROUTER: the sender's identity comes first
        frame = self._decode(port, parts)
        if frame is None:
            return
        self._frames_in(self.stage.name, frame.KIND).inc()
        if isinstance(frame, frames.Stop):
            self._log.info("stop_requested", reason=frame.reason)
            self.request_stop()
            return
        if isinstance(frame, frames.Activate):
            return  # addressed to a spare; this process is already active
        if isinstance(frame, frames.Owned):
            self._on_owned(frame)
            if self.stage.hears_owned:
                self._outbox.extend(self._stage_call(self.stage.handle, CONTROL, frame))
            return
        if self.state is StageState.READY:
            self._set_state(StageState.RUNNING)
        port = CONTROL if port == "_control_down" else addressed(port, peer) if peer is not None else port
        self._outbox.extend(self._stage_call(self.stage.handle, port, frame, preempt_on=self._more_urgent.get(port)))

    def _flush_outbox(self) -> None:
        timeout_ms = max(1, int((self._next_hb_ns - self._clock()) / 1e6))
        while self._outbox:
            port, frame = self._outbox[0]
            base, peer = split_addressed(port)
            spec = self.stage.outputs.get(base)
            blocking = spec.blocking if spec else False
            if send(self._sockets[base], frame, self.stage.name, timeout_ms if blocking else 0, to=peer):
                self._frames_out(self.stage.name, frame.KIND).inc()
                self.stage.sent(port, frame)
            elif blocking:
                return  # backpressure: retry after the next heartbeat
            else:
                metrics.FRAMES_DROPPED.labels(self.stage.name, f"no_peer_{base}").inc()
            self._outbox.popleft()

    def _stage_call(self, fn, *args, preempt_on: list | None = None):
        """A per-frame call: inline for a stage whose calls are short, else in the worker thread."""
        return fn(*args) if not self.stage.long_calls else self._call(fn, *args, preempt_on=preempt_on)

    def _call(self, fn, *args, preempt_on: list | None = None):
        """Run a stage call in the worker thread, heartbeating while it is busy.

        `preempt_on`: more urgent input sockets; the first message on one calls `stage.preempt()`
        (a final waiting behind a partial, so the partial can stop early).
        """
        future = self._executor.submit(fn, *args)
        self._busy_since_ns = self._clock()
        urgent = Poller(preempt_on) if preempt_on else None
        try:
            while True:
                try:
                    return future.result(timeout=PREEMPT_CHECK_S if urgent else self._hb_ns / 1e9)
                except concurrent.futures.TimeoutError:
                    if urgent and urgent.readable(0):
                        self.stage.preempt()
                        urgent = None
                    if self._sockets and self._clock() >= self._next_hb_ns:
                        self._next_hb_ns = self._clock() + self._hb_ns
                        self._send_heartbeat()
        finally:
            self._busy_since_ns = 0

    def _set_state(self, state: StageState) -> None:
        self.state = state
        self._log.info(f"stage_{state.value}")
        self._send_heartbeat()

    def _send_heartbeat(self) -> None:
        if CONTROL not in self._sockets:
            return
        self._exit_if_unowned(self._ownership.exit_reason())
        hb = frames.Heartbeat(self.stage.name, os.getpid(), self.state.value, self.stage.last_seq, self._busy_since_ns)
        send(self._sockets[CONTROL], hb, self.stage.name, 0)
        if self.state in (StageState.READY, StageState.RUNNING, StageState.DRAINING):
            for port, frame in self.stage.heartbeat_outputs(self._busy_since_ns != 0):
                if port in self._sockets:
                    send(self._sockets[port], frame, self.stage.name, 0)

    def _on_owned(self, frame: frames.Owned) -> None:
        owner = self._ownership.owner
        self._exit_if_unowned(self._ownership.on_owned(frame))
        if self._ownership.owner != owner:
            self._next_hb_ns = 0  # adopted: the new supervisor learns our state now, not in up to 5 s (a spare)

    def _exit_if_unowned(self, reason: str | None) -> None:
        """No supervisor owns this process (pipeline/ownership.py): exit, as a crashed stage would.
        os._exit because a model call may still hold the worker thread, which a normal exit waits for."""
        if reason:
            self._log.error("stage_unowned", reason=reason)
            os._exit(ExitCode.TRANSIENT)

    def _finish(self, transport: Transport) -> None:
        self.state = StageState.STOPPED
        self._send_heartbeat()
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.stage.close()
        if self._recorder:
            self._recorder.close()
        self._handshakes.close()
        transport.close()
        self._log.info("stage_stopped")

    # -- replay mode ---------------------------------------------------------------

    def replay(self, in_path: Path | None, out_path: Path) -> int:
        """Feed recorded input frames to the stage offline and record what it emits."""
        with RecordWriter(out_path) as out:
            for step in (self.stage.preload, self.stage.start):
                if (code := self._guarded(step)) is not None:
                    return code
            try:
                for port, frame in self._replay_inputs(in_path):  # lazily: sent() before the next input
                    out.write(port, frames.encode(frame, self.stage.name))
                    self.stage.sent(port, frame)
            except StageFailed as err:
                return self._cannot_continue(err)
        self.stage.close()
        return ExitCode.CLEAN

    def _replay_inputs(self, in_path: Path | None):
        if in_path is None:  # a source stage: run it until it is exhausted
            while not self.stage.exhausted:
                yield from self._call(self.stage.produce, 0.0)
        else:
            for port, parts in RecordReader(in_path):
                frame = self._decode(port, parts)
                if frame is not None:
                    yield from self._call(self.stage.handle, port, frame)
        yield from self._call(self.stage.begin_drain)

    def _decode(self, port: str, parts: list[bytes]) -> Frame | None:
        """A bad frame (or one this port does not take) is counted, logged and dropped: it never stops the stage."""
        try:
            frame = frames.decode(parts)
        except FrameDecodeError as err:
            return self._malformed(port, str(err))
        kinds = (CONTROL_KINDS if port in ("_control_down", CONTROL)
                 else getattr(self.stage.inputs.get(split_addressed(port)[0]), "kinds", ()))
        if kinds and frame.KIND not in kinds:
            return self._malformed(port, f"unexpected frame kind {frame.KIND!r} (takes {', '.join(kinds)})")
        return frame

    def _malformed(self, port: str, reason: str) -> None:
        metrics.FRAMES_MALFORMED.labels(self.stage.name, port).inc()
        self._log.warning("frame_malformed", port=port, reason=reason)
        return None
