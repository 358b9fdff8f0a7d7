"""Two hosts on one machine: network namespaces joined by a veth pair (needs root and iproute2).

Host `a` is a namespace of its own, or this process's own network stack (`own_a=False`: the
benchmark's clients then reach a's servers on 127.0.0.1); host `b` is always a namespace.
Unix sockets are files, so ipc:// still works across them: only tcp crosses the veth.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid

import yaml

from pipeline.harness.pipeline_process import pipeline_config
from pipeline.harness.waiting import ROOT

NET = "10.231.7"


class NetnsUnavailable(RuntimeError):
    """Why namespaces cannot be made here (a test skips with it)."""


class Hosts:
    """`NET.1` on a's end of the veth, `NET.2` on b's; `prefix(host)` runs a command there."""

    def __init__(self, own_a: bool = True) -> None:
        if shutil.which("ip") is None:
            raise NetnsUnavailable("no `ip` command (iproute2): network namespaces cannot be made here")
        tag = uuid.uuid4().hex[:6]
        self.a = f"luxa-a-{tag}" if own_a else None
        self.b, self.link_a, self.link_b = f"luxa-b-{tag}", f"lxa{tag}", f"lxb{tag}"
        self.address_a, self.address_b = f"{NET}.1", f"{NET}.2"
        try:
            self._make()
        except subprocess.CalledProcessError as err:
            self.close()
            raise NetnsUnavailable(f"network namespaces cannot be made here ({err.stderr.strip() or err}): "
                                   "needs root") from None

    def _make(self) -> None:
        for ns in (self.a, self.b):
            if ns:
                _ip("netns", "add", ns)
        _ip("link", "add", self.link_a, "type", "veth", "peer", "name", self.link_b)
        for ns, link, address in ((self.a, self.link_a, self.address_a), (self.b, self.link_b, self.address_b)):
            at = ("-n", ns) if ns else ()
            if ns:
                _ip("link", "set", link, "netns", ns)
                _ip(*at, "link", "set", "lo", "up")
            _ip(*at, "addr", "add", f"{address}/24", "dev", link)
            _ip(*at, "link", "set", link, "up")

    def prefix(self, host: str) -> tuple[str, ...]:
        ns = self.a if host == "a" else self.b
        return ("ip", "netns", "exec", ns) if ns else ()

    def link(self, up: bool) -> None:
        """Cut (or restore) the link, on b's side: a pulled cable."""
        _ip("-n", self.b, "link", "set", self.link_b, "up" if up else "down")

    def close(self) -> None:
        for ns in (self.a, self.b):
            if ns:
                subprocess.run(["ip", "netns", "del", ns], capture_output=True)  # takes its veth end along
        subprocess.run(["ip", "link", "del", self.link_a], capture_output=True)  # a left in this stack


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def remote_workers(hosts: Hosts, run_dir, endpoint: str, server_key, client_secret, **transcribe) -> subprocess.Popen:
    """`python supervisor.py --role worker` on host b, its own run dir and config (`transcribe`:
    that section's overrides), joining the pipeline's pool at `endpoint`. Logs: run_dir/worker.log."""
    run_dir.mkdir(mode=0o700)
    config = run_dir / "config.yaml"
    config.write_text(yaml.safe_dump(pipeline_config(run_dir, audio={"device": "none"},
                                                     transcribe={"gpu": {"enabled": False}, **transcribe})))
    return subprocess.Popen([*hosts.prefix("b"), sys.executable, "supervisor.py", "--config", str(config),
                             "--role", "worker", "--connect", endpoint, "--curve", str(server_key), str(client_secret),
                             "--log-format", "json"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(run_dir / "worker.log", "wb"))


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
