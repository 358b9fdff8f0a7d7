"""Restart and routing decisions: pure functions of what happened and when (clock injected).

The supervisor only carries decisions out; nothing here sleeps or keeps timers.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable, Iterable

from pipeline.config import RestartConfig, SupervisorConfig
from pipeline.exitcodes import ExitCode
from pipeline.lifecycle import StageState
from pipeline.topology import base_stage


@dataclass(frozen=True)
class Restart:
    """Start the stage again after `after_s`."""
    after_s: float


@dataclass(frozen=True)
class GiveUp:
    """Flapping: stop restarting the stage (FAILED, logged, gauged)."""
    reason: str


@dataclass(frozen=True)
class Failover:
    """The GPU worker is out: route to `to`, and try the GPU again after `retry_after_s`."""
    to: str
    retry_after_s: float


Decision = Restart | GiveUp | Failover


class Backoff:
    """Exponential with jitter in [0.5, 1] of the step: the initial delay doubling to a cap."""

    def __init__(self, initial_s: float, max_s: float, rng: Callable[[], float] = random.random) -> None:
        self.initial_s, self.max_s, self._rng = initial_s, max_s, rng

    def delay_s(self, attempt: int) -> float:
        step = min(self.max_s, self.initial_s * (2 ** max(0, attempt - 1)))
        return step * (0.5 + 0.5 * self._rng())


@dataclass
class FlapDetector:
    """Consecutive failures within a window; reset only after a stable READY stretch."""
    max_restarts: int
    window_s: float
    stable_after_s: float
    failures: list[float] = field(default_factory=list)
    ready_since: float | None = None

    def on_ready(self, now: float) -> None:
        self.ready_since = now

    def on_failure(self, now: float) -> int:
        if self.ready_since is not None and now - self.ready_since >= self.stable_after_s:
            self.failures.clear()
        self.ready_since = None
        self.failures = [t for t in self.failures if now - t <= self.window_s] + [now]
        return len(self.failures)

    def flapping(self) -> bool:
        return len(self.failures) > self.max_restarts


class RestartPolicy:
    """`on_failure(stage, exit_code, now)` -> Restart | GiveUp | Failover."""

    def __init__(self, cfg: RestartConfig, gpu_worker: str, cpu_worker: str,
                 rng: Callable[[], float] = random.random) -> None:
        self.cfg = cfg
        self.gpu_worker, self.cpu_worker = gpu_worker, cpu_worker
        self.backoff = Backoff(cfg.backoff_initial_s, cfg.backoff_max_s, rng)
        self._flaps: dict[str, FlapDetector] = {}

    def _flap(self, stage: str) -> FlapDetector:
        if stage not in self._flaps:
            self._flaps[stage] = FlapDetector(self.cfg.max_restarts, self.cfg.window_s, self.cfg.stable_after_s)
        return self._flaps[stage]

    def on_ready(self, stage: str, now: float) -> None:
        self._flap(stage).on_ready(now)

    def on_failure(self, stage: str, exit_code: int | None, now: float) -> Decision:
        if exit_code == ExitCode.CONFIG_ERROR:
            return GiveUp("configuration error (exit 78): fix the config, a restart cannot help")
        attempts = self._flap(stage).on_failure(now)
        gpu = base_stage(stage) == self.gpu_worker  # any worker of the GPU pool
        if gpu and exit_code in (ExitCode.GPU_UNAVAILABLE, ExitCode.NO_GPU):
            return Failover(self.cpu_worker, self.cfg.gpu_recheck_s)
        if self._flap(stage).flapping():
            if gpu:
                return Failover(self.cpu_worker, self.cfg.gpu_recheck_s)
            return GiveUp(f"{attempts} failures within {self.cfg.window_s:g} s")
        return Restart(self.backoff.delay_s(attempts))


def choose_active(healthy: Iterable[str], preference: Iterable[str]) -> str | None:
    """Route to the most preferred healthy worker: the GPU when it is up, else the CPU one.

    Switching back to the GPU as soon as it is healthy again is deliberate: a READY GPU worker
    has loaded and warmed its model, so the switch costs nothing and every later utterance is faster.
    """
    healthy = set(healthy)
    return next((w for w in preference if w in healthy), None)


def hang_reason(state: StageState, since_spawn_s: float, since_heartbeat_s: float, busy_for_s: float,
                cfg: SupervisorConfig) -> str | None:
    """Why a live process counts as hung, or None: never READY, silent, or stuck in one call
    (the runner heartbeats from its main thread while a call runs in its worker thread, and
    reports since when it is busy: an endless model call shows up here, heartbeats or not)."""
    if state is StageState.STARTING:
        return "start_timeout" if since_spawn_s > cfg.start_timeout_s else None
    interval_s = cfg.spare_heartbeat_interval_s if state is StageState.STANDBY else cfg.heartbeat_interval_s
    if since_heartbeat_s > cfg.heartbeat_liveness * interval_s:
        return "heartbeat_missed"
    if busy_for_s > cfg.max_busy_s:
        return "busy_too_long"
    return None


def memory_reason(rss_mib: float, limit_mib: int | None) -> str | None:
    """A stage over its resident-memory limit is replaced like a crashed one (a leak cannot take
    the machine down)."""
    return "memory_limit" if limit_mib and rss_mib > limit_mib else None
