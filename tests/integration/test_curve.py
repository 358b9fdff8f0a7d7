"""A sink listening beyond loopback admits only CURVE clients whose key is authorized."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import replace

import pytest

from pipeline import frames, topology
from pipeline.harness.lone_stage import LoneStage
from pipeline.harness.pipeline_process import ROOT
from pipeline.harness.waiting import wait_until
from pipeline.keys import generate
from pipeline.transport import HandshakeWatch, Poller, PortSpec, Transport, generate_certificates, recv_parts, send


def bound_port(stage: LoneStage) -> int:
    """The port ZeroMQ picked for `tcp://...:*`, from the stage's own `socket_bound` log line."""
    def logged() -> int | None:
        for line in stage.log().splitlines():
            if '"socket_bound"' in line:
                return int(json.loads(line)["endpoint"].rsplit(":", 1)[1])
        return None
    return wait_until(logged, 30, what="the sink to say which port it bound")


@pytest.mark.slow
def test_unauthenticated_and_unknown_clients_are_refused_an_authorized_one_hears(run_dir):
    keys = run_dir / "keys"
    curve = generate(keys)
    _, stranger_secret = generate_certificates(run_dir, "stranger")  # a valid key pair, never authorized
    sink = LoneStage(run_dir / "s", "sink", config={"endpoints": {"transcripts": "tcp://0.0.0.0:*", "curve": curve}})
    port = bound_port(sink)
    client = Transport()
    watches: dict[str, HandshakeWatch] = {}
    try:
        spec = PortSpec("sub", f"tcp://127.0.0.1:{port}", bind=False, subscribe=(b"transcript",))
        server_key = str(keys / "server.key")
        friend = client.open(replace(spec, curve_client=(server_key, str(keys / "client-1.key_secret"))))
        # Watched from before they connect: the first handshake's refusal may come at once.
        stranger = client.open(replace(spec, curve_client=(server_key, str(stranger_secret))),
                               before_connect=lambda s: watches.update(stranger=HandshakeWatch(s)))
        plain = client.open(spec, before_connect=lambda s: watches.update(plain=HandshakeWatch(s)))
        results = sink.peer(PortSpec("push", topology.results(sink.run_dir), bind=False))
        heard = {"friend": [], "stranger": [], "plain": []}
        socks = {friend: "friend", stranger: "stranger", plain: "plain"}
        poller = Poller(list(socks))

        def friend_heard() -> bool:
            # A new transcript each pass: PUB drops what is sent before a subscriber is connected.
            send(results, frames.Transcript(f"u{time.monotonic_ns()}", "Bonjour.", "fr", [], "base", "cpu",
                                            "transcribe_cpu", 1.0, 0.1, 0.1, True, time.time()), "test", 1000)
            for sock in poller.readable(0.1):
                heard[socks[sock]].append(frames.decode(recv_parts(sock)))
            return any(isinstance(f, frames.Transcript) for f in heard["friend"])

        wait_until(friend_heard, 30, what="the authorized client to hear a transcript")
        wait_until(lambda: watches["stranger"].poll() and watches["plain"].poll(), 30, what="both refusals")
        assert "failed_auth" in watches["stranger"].events  # right protocol, key not on the list
        assert "succeeded" not in watches["plain"].events and watches["plain"].events  # no CURVE at all
        for sock in poller.readable(0.2):
            heard[socks[sock]].append(frames.decode(recv_parts(sock)))
        assert [f for f in heard["friend"] if isinstance(f, frames.Transcript)][0].text == "Bonjour."
        assert heard["stranger"] == [] and heard["plain"] == []
    finally:
        for watch in watches.values():
            watch.close()
        client.close()
        sink.close()


def test_listening_beyond_loopback_without_keys_stops_the_supervisor_before_anything_starts(run_dir):
    config = run_dir / "c.yaml"
    config.write_text(f"run_dir: {run_dir}\nendpoints:\n  transcripts: tcp://0.0.0.0:5556\n")
    proc = subprocess.run([sys.executable, "supervisor.py", "--config", str(config), "--test-mode"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 78
    assert "needs CURVE authentication" in proc.stderr
