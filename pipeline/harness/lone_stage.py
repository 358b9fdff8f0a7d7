"""One stage process alone (`python -m stages.<module>`), with a stand-in supervisor's control
sockets: its heartbeats, its metrics and its log are observed from outside."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from pipeline import frames
from pipeline.config import parse_config, write_snapshot
from pipeline.harness.waiting import ROOT, wait_until
from pipeline.lifecycle import StageState
from pipeline.transport import Poller, PortSpec, Transport, recv_parts


class LoneStage:
    """`python -m stages.<module>` on a private run dir; its heartbeats, metrics and logs observed."""

    def __init__(self, run_dir: Path, module: str, *args: str, config: dict | None = None,
                 until: StageState | None = None) -> None:
        """Returns once the stage serves (its heartbeat says so) or, with `until`, once its log says
        it reached that state (a spare's STANDBY: its heartbeats are too rare to wait for)."""
        self.run_dir = run_dir
        self.prom = run_dir / "prom"
        self.prom.mkdir(parents=True, exist_ok=True)
        cfg = parse_config({"run_dir": str(run_dir), **(config or {})})
        write_snapshot(cfg, run_dir / "config.json")
        self.transport = Transport()
        self.up = self.transport.open(PortSpec("sub", f"ipc://{run_dir}/control_up.sock", bind=True,
                                               subscribe=(b"heartbeat",)))
        self.down = self.transport.open(PortSpec("xpub", f"ipc://{run_dir}/control_down.sock", bind=True))
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(self.prom)}
        self.proc = subprocess.Popen([sys.executable, "-m", f"stages.{module}", "--config",
                                      str(run_dir / "config.json"), *args], cwd=ROOT, env=env,
                                     stderr=open(run_dir / "stage.log", "wb"))
        self._until = until
        wait_until(self._ready, 120, what=f"{module} {until.value if until else 'READY'}")

    def _ready(self) -> bool:
        if self._until is not None:
            assert self.proc.poll() is None, self.log()
            return self.log_count(f"stage_{self._until.value}") > 0
        for sock in Poller([self.up]).readable(0.1):
            hb = frames.decode(recv_parts(sock))
            if hb.pid == self.proc.pid and StageState(hb.state).serving:
                return True
        assert self.proc.poll() is None, self.log()
        return False

    def wait_subscribed(self, count: int) -> None:
        """XPUB hears each subscription: real synchronisation, no slow-joiner guess."""
        seen = []
        wait_until(lambda: seen.extend(recv_parts(s)[0] for s in Poller([self.down]).readable(0.1)) or len(seen) >= count,
                   30, what="stage subscriptions")

    def peer(self, spec: PortSpec):
        return self.transport.open(spec)

    def counter(self, name: str, **labels: str) -> float:
        from prometheus_client import CollectorRegistry
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(self.prom))
        return sum(s.value for fam in registry.collect() for s in fam.samples
                   if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))

    def handled(self, stage: str) -> float:
        """Every message the runner took: decoded and passed on, or counted malformed."""
        return self.counter("stt_frames_in_total", stage=stage) + self.counter("stt_frames_malformed_total", stage=stage)

    def log(self) -> str:
        return (self.run_dir / "stage.log").read_text(errors="replace")

    def log_count(self, event: str, **fields: str) -> int:
        count = 0
        for line in self.log().splitlines():
            try:
                e = json.loads(line)
            except ValueError:
                continue
            count += e.get("event") == event and all(e.get(k) == v for k, v in fields.items())
        return count

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.transport.close()
