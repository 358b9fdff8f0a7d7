"""Runs the real supervisor as a subprocess and watches it from outside, as LUXA would.

Transcripts arrive through a real SUB socket on the `transcript` topic; stderr JSON log lines
are parsed into events so tests can assert on what the pipeline said it did.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

from pipeline import frames, topology
from pipeline.adoption import start_time
from pipeline.config import load_config
from pipeline.harness.waiting import ROOT, wait_until
from pipeline.history import CatchUp
from pipeline.transport import Poller, PortSpec, Transport, recv_parts


def pipeline_config(run_dir: Path, **sections) -> dict:
    """Defaults plus what a test needs: its own run dir, a free metrics port, quick restarts."""
    cfg = {"run_dir": str(run_dir), "metrics": {"port": 0},
           "supervisor": {"restart": {"backoff_initial_s": 0.2}}}
    for key, value in sections.items():
        cfg[key] = {**cfg.get(key, {}), **value}
    return cfg


class Subscriber:
    """A LUXA client: SUB on the public transcripts endpoint, collecting in a thread. Finals come
    through `CatchUp` (pipeline/history.py) when given the run dir's history file: every final of
    the run, in order, once, even those published while it was reconnecting to a new sink."""

    def __init__(self, endpoint: str, topics: tuple[bytes, ...] = (b"transcript",), history: Path | None = None) -> None:
        self.frames: list = []  # transcripts: partials as heard, finals as CatchUp delivers them
        self.received_at: dict[str, float] = {}  # utt_id -> epoch s when its final arrived here
        self.catch_up = CatchUp(history, from_start=True) if history else None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(endpoint, topics), daemon=True)
        self._thread.start()
        self._ready.wait(5)

    def _run(self, endpoint: str, topics) -> None:
        transport = Transport()
        sock = transport.open(PortSpec("sub", endpoint, bind=False, subscribe=topics))
        poller = Poller([sock])
        self._ready.set()
        while not self._stop.is_set():
            for s in poller.readable(0.1):
                self._take(frames.decode(recv_parts(s)))
        transport.close()

    def _take(self, frame: frames.Frame) -> None:
        if isinstance(frame, frames.Transcript) and frame.is_partial:
            self.frames.append(frame)
            return
        finals = self.catch_up.receive(frame) if self.catch_up else [frame]
        for final in finals:
            if isinstance(final, frames.Transcript):
                self.received_at[final.utt_id] = time.time()
                self.frames.append(final)

    def transcripts(self) -> list[frames.Transcript]:
        """Finals, in arrival order (the `transcript` subscription also receives `transcript.partial`)."""
        return [f for f in list(self.frames) if isinstance(f, frames.Transcript) and not f.is_partial]

    def partials(self) -> list[frames.Transcript]:
        return [f for f in list(self.frames) if isinstance(f, frames.Transcript) and f.is_partial]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


class PipelineProcess:
    """`python supervisor.py` as a child, its stdout, stderr events and a subscriber collected."""
    def __init__(self, run_dir: Path, config: dict, *args: str, env: dict | None = None,
                 prefix: tuple[str, ...] = ()) -> None:
        """`prefix`: what the supervisor's command runs under (`ip netns exec NAME`: another host)."""
        self.run_dir = run_dir
        self.config_path = run_dir / "test-config.yaml"
        self.config_path.write_text(yaml.safe_dump(config, allow_unicode=True))
        self.cfg = load_config(self.config_path)
        self.stdout_lines: list[str] = []
        self.events: list[dict] = []
        self.stderr_lines: list[str] = []
        self.subscriber = Subscriber(topology.transcripts(self.cfg, run_dir), history=topology.history(run_dir))
        self._argv = [*prefix, sys.executable, "supervisor.py", "--config", str(self.config_path), *args]
        self._env = {**os.environ, **(env or {})}
        self._readers: list[threading.Thread] = []
        self._spawn()

    def _spawn(self) -> None:
        self.proc = subprocess.Popen(self._argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=self._env)
        readers = [threading.Thread(target=self._read, args=(self.proc.stdout, self.stdout_lines), daemon=True),
                   threading.Thread(target=self._read_events, args=(self.proc.stderr,), daemon=True)]
        for t in readers:
            t.start()
        self._readers += readers

    def restart_after_crash(self) -> None:
        """What systemd does for the unit (KillMode=process, Restart=on-failure) once the supervisor
        died: start it again on the same run dir, its stages left running for it to adopt."""
        self.proc.wait()
        self._spawn()

    @staticmethod
    def _read(stream, sink: list) -> None:
        for line in stream:
            sink.append(line.rstrip("\n"))

    def _read_events(self, stream) -> None:
        for line in stream:
            self.stderr_lines.append(line)
            try:
                self.events.append(json.loads(line))
            except json.JSONDecodeError:
                pass

    def find(self, event: str, **fields) -> list[dict]:
        return [e for e in list(self.events) if e.get("event") == event
                and all(e.get(k) == v for k, v in fields.items())]

    def wait_event(self, event: str, timeout_s: float = 60, **fields) -> dict:
        try:
            return wait_until(lambda: (self.find(event, **fields) or [None])[-1], timeout_s, what=f"{event} {fields}")
        except AssertionError as err:
            raise AssertionError(f"{err}\n--- pipeline log ---\n{self.log_tail()}") from None

    def metrics_url(self) -> str:
        return self.wait_event("metrics_serving", timeout_s=30)["url"].rsplit("/", 1)[0]

    def stage_pids(self) -> dict[str, int]:
        """The process serving each stage now: the last one spawned or promoted from spare."""
        return {e["stage_name"]: e["pid"] for e in list(self.events) if e.get("event") in ("stage_spawned", "spare_promoted")}

    def spare_pids(self) -> dict[str, int]:
        """The spare spawned last for each stage (and not promoted since)."""
        return {name: pids[-1] for name, pids in self.all_spare_pids().items()}

    def all_spare_pids(self) -> dict[str, list[int]]:
        """Every spare spawned and not promoted since, oldest first (`spares_per_stage` > 1: several)."""
        promoted = {e["pid"] for e in self.find("spare_promoted")}
        found: dict[str, list[int]] = {}
        for e in self.find("spare_spawned"):
            if e["pid"] not in promoted:
                found.setdefault(e["stage_name"], []).append(e["pid"])
        return found

    def wait_exit(self, timeout_s: float = 120) -> int:
        code = self.proc.wait(timeout=timeout_s)
        for t in self._readers:
            t.join(5)
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        for pid in [*self.stage_pids().values(), *(p for pids in self.all_spare_pids().values() for p in pids)]:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        self.subscriber.close()

    def log_tail(self, n: int = 60) -> str:
        return "".join(self.stderr_lines[-n:])


def pid_alive(pid: int) -> bool:
    """True unless the process is gone or a zombie (an orphan waiting for init to reap it)."""
    return start_time(pid) is not None
