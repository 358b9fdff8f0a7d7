"""Supervisor: starts every stage, watches heartbeats, restarts, routes, and stops cleanly.

`python supervisor.py` listens to the microphone; `--source PATH` plays files and exits after
the last transcript; `--test-mode` plays the bundled French recording and checks the words.
Decisions come from pipeline/policy.py; this module only carries them out.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from pathlib import Path

from pipeline import frames, topology
from pipeline.adoption import AdoptedProcess, Record, StageRecord
from pipeline.config import PipelineConfig, load_config_or_exit, snapshot_text
from pipeline.exitcodes import ExitCode, describe
from pipeline.lifecycle import StageState
from pipeline.logs import LOG_FORMAT_ENV, configure_logging, console_logs, get_logger
from pipeline.policy import Failover, GiveUp, Restart, RestartPolicy, choose_active, hang_reason, memory_reason
from pipeline.procs import StageProcess, child_env, child_exit_pipe, kill, rss_mib, stage_command, stop_all, wake_up
from pipeline.rundir import RunDirError, clear_after_clean_stop, fresh_metrics_dir, leftover_state, open_run_dir
from pipeline.spares import Spares
from pipeline.supervisor_args import overrides_from, parse_args, remote_worker_flags, transcript_view
from pipeline.testmode import TestModeCheck
from pipeline.transcription import gpu
from pipeline.transport import Poller, PortSpec, Transport, ipc_endpoint, recv_parts, send

BREAKER_NAMES = {0: "closed", 1: "half_open", 2: "open"}
CHECK_GRACE_S = 5.0  # test mode: how long after Drained the last transcript's copy may still come
RECONCILE_EVERY_S = 1.0  # liveness, busy and start checks; exits, state changes and due starts act at once


class Supervisor:
    """Owns the processes: spawns the stages (and their spares), watches their heartbeats, carries
    out the restart and routing decisions of pipeline/policy.py, and stops everything in order."""

    def __init__(self, cfg: PipelineConfig, run_dir: Path, transcript_view: str | None, check: TestModeCheck | None,
                 keep_running: bool = False, record: StageRecord | None = None, inherited: Record | None = None,
                 worker_flags: list[str] | None = None) -> None:
        """`worker_flags` (`--role worker`): run only the workers, joined to a remote pipeline with these."""
        self.cfg = cfg
        self.keep_running = keep_running
        self.sup = cfg.supervisor
        self.run_dir = run_dir
        self.check = check
        self.log = get_logger()
        self.policy = RestartPolicy(cfg.supervisor.restart, "transcribe_gpu", "transcribe_cpu")
        self.worker_flags = worker_flags or []
        stages = [n for n in topology.active_stages(cfg) if topology.is_worker(n) or not worker_flags]
        self.procs = {name: StageProcess(name, self._argv(name, transcript_view)) for name in stages}
        self.spares = Spares(self.procs, cfg.supervisor.spares, cfg.supervisor.spares_per_stage, self.policy.backoff)
        self.active: str | None = None
        self.epoch = 0
        self.stopping = False
        self._drained_at: float | None = None  # when the VAD reported the source done (monotonic s)
        self._announced = False  # the one line a person at a terminal is shown when it first serves
        self._reconcile_now = False  # a child exited or a stage changed state: reconcile on this pass
        self.exit_code = ExitCode.CLEAN
        self.env = child_env(str(run_dir / "prom"))
        self.metrics = None  # pipeline.metrics, imported by prepare_metrics()
        self.record = record or StageRecord(run_dir, snapshot_text(cfg))
        self.inherited = inherited  # what a crashed predecessor left running, adopted in run()
        self._settle_until = 0.0  # adopted workers' first heartbeats awaited until then (monotonic s)
        self._unheard: set[int] = set()  # adopted workers not heard from yet: not failed, just unknown

    def _argv(self, name: str, transcript_view: str | None) -> list[str]:
        snapshot = ["--config", str(self.run_dir / "config.resolved.json")]
        base, lane = topology.base_stage(name), topology.lane_of(name)
        if base in topology.WORKERS:
            return stage_command("transcribe", "--worker", base, *(["--member", str(lane)] if lane else []), *snapshot,
                                 *self.worker_flags)
        return stage_command(topology.MODULES.get(base, base), *snapshot, *(["--lane", str(lane)] if lane else []),
                             *(["--print", transcript_view] if name == "sink" and transcript_view else []))

    def _declare_series(self) -> None:
        """Every series known in advance, at 0 before /ready can answer 200 (see metrics.py)."""
        workers = topology.enabled_workers(self.cfg)
        models_by_device: dict[str, list[str]] = {}
        for worker in workers:
            worker_cfg = topology.worker_config(self.cfg, worker)
            models_by_device.setdefault(worker_cfg.device, []).extend(worker_cfg.models)
        gpus = gpu.device_labels() if "cuda" in models_by_device else []
        members = [n for n in self.procs if topology.is_worker(n)]  # `transcribe_cpu`, `transcribe_cpu.1`, ...
        self.metrics.declare_known_series(models_by_device, self.procs, members, gpus)

    # -- main loop -------------------------------------------------------------------

    def prepare_metrics(self) -> None:
        """Import the metrics (after PROMETHEUS_MULTIPROC_DIR is set, see main) and declare every
        known series, before the HTTP endpoint serves: a scrape reading this process's metrics
        file while the declarations grow it could fail."""
        if self.metrics is None:
            from pipeline import metrics

            self.metrics = metrics
            self._declare_series()

    def run(self) -> int:
        self.prepare_metrics()
        transport = Transport()
        up = transport.open(PortSpec("sub", ipc_endpoint(self.run_dir, "control_up"), bind=True,
                                     subscribe=(b"heartbeat", b"drained")))
        self.down = transport.open(PortSpec("pub", ipc_endpoint(self.run_dir, "control_down"), bind=True))
        sockets = [up]
        if self.check:
            self.check_sock = transport.open(PortSpec("sub", topology.events(self.run_dir), bind=False,
                                                      subscribe=(b"transcript",)))
            sockets.append(self.check_sock)
        child_exited, wake = child_exit_pipe()
        if self.inherited:
            self._adopt(self.inherited, lambda: wake_up(wake))
        poller = Poller([*sockets, child_exited])
        next_route = next_reconcile = last_pass = 0.0
        try:
            while not self.stopping:
                wake_at = min(next_reconcile, self._next_start(after=last_pass))
                for sock in poller.readable(max(0.0, wake_at - time.monotonic())):
                    if sock == child_exited:
                        os.read(child_exited, 4096)  # only a wake-up: _reconcile sees who exited
                        self._reconcile_now = True
                    else:
                        self._on_message(sock, recv_parts(sock))
                now = time.monotonic()
                # Every RECONCILE_EVERY_S, and at once on an exit, a state change or a due start: a
                # pass per heartbeat (9 processes) polled every child 20 times a second while idle.
                if self._reconcile_now or now >= wake_at:
                    self._reconcile_now, next_reconcile, last_pass = False, now + RECONCILE_EVERY_S, now
                    self._reconcile(now)
                self._stop_when_checked(now)
                if now >= next_route:
                    self._publish_route()
                    next_route = now + self.sup.heartbeat_interval_s
        finally:
            self._shutdown()
            transport.close()
        return self.exit_code

    def request_stop(self, reason: str, code: int = ExitCode.CLEAN) -> None:
        if not self.stopping:
            self.log.info("supervisor_stopping", reason=reason)
            self.stopping, self.exit_code = True, code

    def _on_message(self, sock, parts: list[bytes]) -> None:
        try:
            frame = frames.decode(parts)
        except frames.FrameDecodeError as err:
            self.log.warning("frame_malformed", port="control_up", reason=str(err))
            return
        if isinstance(frame, frames.Heartbeat):
            self._on_heartbeat(frame)
        elif isinstance(frame, frames.Drained):
            self.log.info("source_drained", utterances=frame.utterances)
            if not self.keep_running:
                self._drained_at = time.monotonic()
        elif isinstance(frame, frames.Transcript) and self.check:
            self.check.add(frame)

    def _on_heartbeat(self, hb: frames.Heartbeat) -> None:
        proc = next((p for p in (self.procs.get(hb.stage), *self.spares.of(hb.stage)) if p and p.pid == hb.pid), None)
        if proc is None:
            return  # a heartbeat from a process we already replaced
        try:
            state = StageState(hb.state)  # parsed once, here; compared as an enum everywhere after
        except ValueError:
            self.log.warning("frame_malformed", port="control_up", reason=f"unknown stage state {hb.state!r}")
            return
        now = time.monotonic()
        self._unheard.discard(hb.pid)
        self._reconcile_now = self._reconcile_now or state is not proc.state
        proc.state, proc.last_heartbeat, proc.busy_since_ns = state, now, hb.busy_since_ns
        if proc.standby:
            if state is StageState.STANDBY and not proc.ready_reported:
                self.spares.ready(proc)
                self.log.info("spare_ready", stage_name=proc.name, pid=proc.pid, start_s=round(now - proc.spawned_at, 3))
            return
        if proc.healthy and not proc.ready_reported:
            proc.ready_reported = True
            self.policy.on_ready(proc.name, now)
            self.metrics.STAGE_UP.labels(proc.name).set(1)
            self.log.info("stage_up", stage_name=proc.name, pid=proc.pid,
                          start_s=round(now - proc.spawned_at, 3), restarts=proc.restarts)
            if proc.name in ("sink", "dispatch") and proc.restarts and not proc.adopted:
                # Results in flight to the dead sink (or jobs held by the dead dispatcher) are gone: a
                # new epoch makes the VAD re-send every unacknowledged utterance (workers answer
                # those they already decoded from their cache).
                self.epoch += 1
            self._publish_route()  # now, not at the next tick: a new VAD needs it before it can send

    def _reconcile(self, now: float) -> None:
        """Compare desired with actual: spawn what is due, detect failures, fix the route."""
        for proc in self.procs.values():
            if proc.failed:
                continue
            if proc.popen is None or not proc.alive:
                if proc.popen is not None and proc.start_at is None:
                    self._on_failure(proc, proc.popen.returncode, describe(proc.popen.returncode), now)
                if proc.start_at is not None and now >= proc.start_at:
                    proc.spawn(self.env, now)
                    self.log.info("stage_spawned", stage_name=proc.name, pid=proc.pid, restarts=proc.restarts)
                continue
            reason = self._failure_seen(proc, now)
            if reason:
                event = "stage_over_memory" if reason == "memory_limit" else "stage_hung"
                self.log.error(event, stage_name=proc.name, pid=proc.pid, reason=reason)
                kill(proc)
                self._on_failure(proc, None, reason, now)
            elif proc.state is StageState.STANDBY:  # a promoted spare: resent each pass until it reports starting
                self._activate(proc)
        self._update_route()
        self._announce_once()
        # Spares only once the pipeline serves: they would slow the first start down for nothing.
        serving = self.active is not None and all(
            p.healthy for n, p in self.procs.items() if not topology.is_worker(n))
        for spare in self.spares.all():
            self._reconcile_spare(spare, now, serving)
        self.record.save(self.epoch, self.active, [(p.name, p.pid, p.standby, p.restarts)
                                                   for p in (*self.procs.values(), *self.spares.all()) if p.alive])

    def _adopt(self, inherited: Record, on_exit) -> None:
        """Take over the processes a crashed supervisor left serving (pipeline/adoption.py): their
        first heartbeats tell their state; the route and its epoch carry on unchanged."""
        now = time.monotonic()
        for survivor in inherited.survivors:
            try:
                adopted = AdoptedProcess(survivor.pid, on_exit)
            except ProcessLookupError:
                continue  # exited since the record was read: started afresh like any dead stage
            proc = self.spares.free_slot(survivor.name) if survivor.standby else self.procs.get(survivor.name)
            if proc is None or proc.popen is not None:
                self.log.warning("stage_not_adopted", stage_name=survivor.name, pid=survivor.pid,
                                 reason="not in this topology")
                adopted.kill()
                adopted.wait()
                continue
            proc.popen, proc.adopted, proc.restarts, proc.start_at = adopted, True, survivor.restarts, None
            proc.state, proc.spawned_at, proc.last_heartbeat = StageState.STARTING, now, now
            self.log.info("stage_adopted", stage_name=proc.name, pid=proc.pid, standby=proc.standby)
            if topology.is_worker(proc.name) and not proc.standby:
                self._unheard.add(proc.pid)
        self.epoch = inherited.epoch
        if any(p.adopted for n, p in self.procs.items() if topology.base_stage(n) == inherited.active):
            self.active = inherited.active
            for name in topology.WORKERS:
                self.metrics.ACTIVE_WORKER.labels(name).set(1 if name == self.active else 0)
        self.metrics.mark_dead(inherited.supervisor_pid)
        self._settle_until = now + self.sup.heartbeat_interval_s * self.sup.heartbeat_liveness

    def _reconcile_spare(self, spare: StageProcess, now: float, serving: bool) -> None:
        """Keep preloaded spares behind each healthy active process; never give up on spares."""
        if spare.alive:
            reason = self._failure_seen(spare, now)
            if reason:
                kill(spare)
                self._spare_failed(spare, reason, now)
            return
        if spare.popen is not None:
            self._spare_failed(spare, describe(spare.popen.returncode), now)
        if serving and self.procs[spare.name].healthy and now >= (spare.start_at or 0.0) and not self.stopping:
            spare.spawn(self.env, now)
            self.log.info("spare_spawned", stage_name=spare.name, pid=spare.pid)

    def _spare_failed(self, spare: StageProcess, reason: str, now: float) -> None:
        self.metrics.mark_dead(spare.pid)
        self.log.warning("spare_failed", stage_name=spare.name, pid=spare.pid, reason=reason)
        self.spares.failed(spare, now)

    def _promote_spare(self, dead: StageProcess, now: float, next_spare_after_s: float) -> bool:
        """Replace a dead process with a spare (pipeline/spares.py chooses which)."""
        spare = self.spares.take(dead, now, next_spare_after_s)
        if spare is None:
            return False
        self.procs[dead.name] = spare
        self.log.info("spare_promoted", stage_name=spare.name, pid=spare.pid, replaces=dead.pid)
        # Now, whatever we last heard: a spare adopted from a crashed supervisor and not heard yet
        # is most likely standing by (and one still preloading reads it once it is: its SUB queue
        # holds it). Re-sent each pass while it reports standby, should this one have been missed.
        self._activate(spare)
        return True

    def _activate(self, proc: StageProcess) -> None:
        send(self.down, frames.Activate(proc.pid, proc.restarts), "supervisor", 0)

    def _stop_when_checked(self, now: float) -> None:
        """The source is done. The last transcript's copy comes on another socket than the VAD's
        Drained, so it may still be on its way: test mode waits for it (a bounded time) to judge."""
        if self._drained_at is None or self.stopping:
            return
        ok = self.check.passed() if self.check else True
        if ok or now - self._drained_at >= CHECK_GRACE_S:
            self.request_stop("source_done", ExitCode.CLEAN if ok else ExitCode.FAILURE)

    def _announce_once(self) -> None:
        """A person at a terminal sees warnings only (logging.console_level): tell them once that it listens."""
        if self._announced or not console_logs() or self.active is None or not all(
                p.healthy for n, p in self.procs.items() if not topology.is_worker(n)):
            return
        self._announced = True
        audio, wyoming = self.cfg.audio, self.cfg.servers.wyoming
        mics = "the microphone" if len(audio.devices) == 1 else f"{len(audio.devices)} microphones"
        heard = [f"playing {audio.source}" if audio.source else f"listening to {mics}"] if audio.captures else []
        heard += [f"serving Wyoming on {wyoming.uri}"] if wyoming else []
        heard += [f"serving the OpenAI API on {self.cfg.servers.openai.url}"] if self.cfg.servers.openai else []
        heard = " and ".join(heard) or "running with no input (audio.device: none, no servers)"
        print(f"LUXA is {heard}, transcribing with {self.active} (language {self.cfg.transcribe.language}). "
              "Ctrl-C stops.", file=sys.stderr, flush=True)

    def _next_start(self, after: float) -> float:
        """When the next stage or spare is due to be spawned after the last pass (monotonic s; inf:
        none is). One already due then waits on something else (the pipeline serving), not the clock."""
        due = [p.start_at for p in (*self.procs.values(), *self.spares.all())
               if p.start_at is not None and p.start_at > after]
        return min(due, default=math.inf)

    def _failure_seen(self, proc: StageProcess, now: float) -> str | None:
        """Detect (pure functions of what was observed, pipeline/policy.py); the caller acts."""
        busy_for_s = (time.monotonic_ns() - proc.busy_since_ns) / 1e9 if proc.busy_since_ns else 0.0
        hung = hang_reason(proc.state, now - proc.spawned_at, now - proc.last_heartbeat, busy_for_s, self.sup)
        if hung or now < proc.memory_check_at or not proc.pid:
            return hung
        proc.memory_check_at = now + self.sup.heartbeat_interval_s  # /proc reads at 10 Hz showed in idle CPU
        return memory_reason(rss_mib(proc.pid), self.sup.max_rss_mb.get(topology.base_stage(proc.name)))

    def _on_failure(self, proc: StageProcess, code: int | None, reason: str, now: float) -> None:
        proc.state = StageState.DOWN
        self.metrics.STAGE_UP.labels(proc.name).set(0)
        self.metrics.mark_dead(proc.pid)
        decision = self.policy.on_failure(proc.name, code, now)
        expected = code == ExitCode.NO_GPU  # a CPU-only machine: the CPU worker was always going to serve
        log = self.log.info if expected else self.log.warning
        log("stage_failed", stage_name=proc.name, pid=proc.pid, reason=reason, decision=type(decision).__name__)
        proc.restarts += 1
        if isinstance(decision, Restart):
            self.metrics.STAGE_RESTARTS.labels(proc.name, reason).inc()
            if not self._promote_spare(proc, now, decision.after_s):
                proc.start_at = now + decision.after_s
        elif isinstance(decision, Failover):
            proc.start_at = now + decision.retry_after_s
            log("gpu_worker_failover", to=decision.to, retry_in_s=decision.retry_after_s, reason=reason)
        if topology.is_worker(proc.name):
            self._publish_route()  # its pid leaves Owned now: the dispatcher gives its jobs to another
        if isinstance(decision, GiveUp):
            proc.failed = True
            self.metrics.STAGE_FAILED.labels(proc.name).set(1)
            self.log.error("stage_given_up", stage_name=proc.name, reason=decision.reason)
            if not topology.is_worker(proc.name) or not any(
                    not p.failed for n, p in self.procs.items() if topology.is_worker(n)):
                self.request_stop(f"{proc.name} failed permanently", ExitCode.FAILURE)

    def _update_route(self) -> None:
        if time.monotonic() < self._settle_until and any(
                p.pid in self._unheard and p.alive for n, p in self.procs.items() if topology.is_worker(n)):
            return  # an adopted worker not heard from yet is not a failed one: keep its route
        healthy = [topology.base_stage(n) for n, p in self.procs.items() if topology.is_worker(n) and p.healthy]
        healthy += topology.remote_only(self.cfg)
        active = choose_active(healthy, topology.WORKERS)
        if active == self.active:
            return
        # The first routing is not a switch away from anything.
        (self.log.info if self.active is None else self.log.warning)(
            "worker_switched", from_worker=self.active, to_worker=active)
        self.metrics.FAILOVERS.labels(str(self.active), str(active)).inc()
        for name in topology.WORKERS:
            self.metrics.ACTIVE_WORKER.labels(name).set(1 if name == active else 0)
        self.active = active
        self.epoch += 1
        self._publish_route()

    def _publish_route(self) -> None:
        # Re-sent every heartbeat interval: PUB/SUB drops messages sent before a peer joins.
        if self.active:
            send(self.down, frames.Route(self.active, self.epoch), "supervisor", 0)
        owned = [p.pid for p in (*self.procs.values(), *self.spares.all()) if p.alive]
        send(self.down, frames.Owned(os.getpid(), owned), "supervisor", 0)  # pipeline/ownership.py

    def _shutdown(self) -> None:
        """Front doors first (capture, Wyoming), then VAD (which finishes the utterance in flight), then the rest."""
        grace = self.sup.graceful_timeout_s
        kind = {n: topology.base_stage(n) for n in self.procs}
        stop_all([p for n, p in self.procs.items() if kind[n] in topology.FRONT_DOORS], grace)
        stop_all([p for n, p in self.procs.items() if kind[n] == "vad"], self.sup.drain_timeout_s + grace)
        stop_all([p for n, p in self.procs.items() if kind[n] not in (*topology.FRONT_DOORS, "vad")]
                 + self.spares.all(), grace)
        for proc in [*self.procs.values(), *self.spares.all()]:
            if proc.pid:
                self.metrics.mark_dead(proc.pid)
        self.log.info("supervisor_stopped", exit_code=int(self.exit_code))

    def status(self, gauges: dict) -> tuple[bool, dict]:
        """Deep health: every stage up, a worker routed, and that worker's engine answered recently."""
        stages = {n: ("failed" if p.failed else p.state.value) for n, p in self.procs.items()}
        breakers = {f"{labels['model']}@{labels['device']}": BREAKER_NAMES.get(int(value), "?")
                    for labels, value in gauges.get("stt_breaker_state", [])}
        last_ok = {labels["device"]: value for labels, value in gauges.get("stt_engine_last_success_timestamp_seconds", [])}
        device = topology.worker_config(self.cfg, self.active).device if self.active else None
        # Epoch seconds on purpose: the gauge is written by another process and read by Prometheus too.
        answered_age_s = time.time() - last_ok[device] if device in last_ok else None
        fresh = answered_age_s is not None and answered_age_s <= 3 * self.cfg.transcribe.health_probe_s
        required = [n for n in self.procs if not topology.is_worker(n)]
        ready = all(self.procs[n].healthy for n in required) and self.active is not None and fresh
        return ready, {"alive": not self.stopping, "stages": stages, "active_worker": self.active,
                       "pids": {n: p.pid for n, p in self.procs.items() if p.alive},
                       "spares": self.spares.states(),
                       "engine_answered_age_s": answered_age_s, "breakers": breakers}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ[LOG_FORMAT_ENV] = args.log_format  # read by every stage's configure_logging
    configure_logging("supervisor")
    if args.list_devices:
        from pipeline.sources import describe_devices
        print(describe_devices())
        return ExitCode.CLEAN
    cfg = load_config_or_exit(args.config, overrides_from(args))
    configure_logging("supervisor", cfg.logging.level, console_level=cfg.logging.console_level)
    try:
        run_dir, lock = open_run_dir(cfg)
    except RunDirError as err:
        print(f"run dir error: {err}", file=sys.stderr)
        return ExitCode.CONFIG_ERROR
    left = leftover_state(run_dir)
    if any(left.values()):
        get_logger().warning("state_resumed", run_dir=str(run_dir), **left)  # the last session did not stop cleanly
    record = StageRecord(run_dir, snapshot_text(cfg))
    inherited = record.inherit(get_logger())
    if inherited is None:
        fresh_metrics_dir(run_dir)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(run_dir / "prom")  # before prometheus_client is imported
    from pipeline.health import HealthServer

    check = TestModeCheck() if args.test_mode else None
    supervisor = Supervisor(cfg, run_dir, transcript_view(args), check=check, keep_running=args.keep_running,
                            record=record, inherited=inherited, worker_flags=remote_worker_flags(args))
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: supervisor.request_stop("signal"))
    supervisor.prepare_metrics()
    health = None
    if cfg.metrics.enabled:
        health = HealthServer(cfg.metrics.host, cfg.metrics.port, str(run_dir / "prom"), supervisor.status)
        health.start()
        get_logger().info("metrics_serving", url=f"http://{cfg.metrics.host}:{health.port}/metrics")
    try:
        code = supervisor.run()
    finally:
        if health:
            health.stop()
    if code == ExitCode.CLEAN and not clear_after_clean_stop(run_dir):
        get_logger().warning("state_kept", reason="utterances still pending after the drain", **leftover_state(run_dir))
    lock.release()
    if check:
        print(json.dumps(check.report(), ensure_ascii=False), file=sys.stderr)
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
