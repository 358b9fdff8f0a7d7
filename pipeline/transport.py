"""ZeroMQ socket factories and framed send/receive; the only module that imports zmq.

Every socket has linger=0 (a dead peer never blocks exit) and a message size cap, and
receiving is always through a poll with a timeout (Paranoid Pirate: never block in recv).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils.monitor import recv_monitor_message

from pipeline import frames
from pipeline.frames import Frame
from pipeline.logs import get_logger

MAX_MESSAGE_BYTES = frames.MAX_BUFFER_BYTES + frames.MAX_HEADER_BYTES
Pattern = Literal["push", "pull", "pub", "sub", "xpub", "dealer", "router"]
_ZMQ_TYPES = {"push": zmq.PUSH, "pull": zmq.PULL, "pub": zmq.PUB, "sub": zmq.SUB, "xpub": zmq.XPUB,
              "dealer": zmq.DEALER, "router": zmq.ROUTER}
ADDRESSED = ("router",)
"""Patterns whose messages carry the peer's identity first (the runner strips and adds it)."""
TCP_HEARTBEAT_MS = 1000
"""ZMTP heartbeats on tcp sockets: a peer behind a cut link is dropped after 3 silent intervals
(its queued messages with it), instead of after the kernel's minutes-long TCP timeout."""


@dataclass(frozen=True)
class PortSpec:
    """How a stage's named port is wired; the runner builds the socket from it."""
    pattern: Pattern
    endpoint: str
    bind: bool
    subscribe: tuple[bytes, ...] = ()
    blocking: bool = True
    """Outputs only: True = wait for the peer (backpressure); False = drop when nobody takes it."""
    hwm: int = 1000
    """Messages queued before backpressure (or dropping); 1 for partial work that goes stale."""
    kinds: tuple[str, ...] = ()
    """Inputs only: the frame kinds this port takes; anything else is counted as malformed."""
    curve_server: tuple[str, str] | None = None
    """(secret certificate file, authorized client certificates dir): only those clients connect."""
    curve_client: tuple[str, str] | None = None
    """(server public certificate file, own secret certificate file), to reach a CURVE server."""


def ipc_endpoint(run_dir: Path, name: str) -> str:
    return f"ipc://{run_dir}/{name}.sock"


class Transport:
    """Owns one zmq.Context and the sockets made from it."""

    def __init__(self) -> None:
        self._ctx = zmq.Context()
        self._sockets: list[zmq.Socket] = []
        self._auth: ThreadAuthenticator | None = None

    def open(self, spec: PortSpec, before_connect: Callable[[zmq.Socket], object] | None = None) -> zmq.Socket:
        """`before_connect`: called with the socket before it binds or connects (a HandshakeWatch must
        be attached by then, or the first handshake's outcome can come before it listens)."""
        sock = self._ctx.socket(_ZMQ_TYPES[spec.pattern])
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, spec.hwm)
        sock.setsockopt(zmq.RCVHWM, spec.hwm)
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        for topic in spec.subscribe:
            sock.setsockopt(zmq.SUBSCRIBE, topic)
        if spec.curve_server:
            self._curve_server(sock, *spec.curve_server)
        if spec.curve_client:
            server_public, _ = zmq.auth.load_certificate(spec.curve_client[0])
            sock.curve_publickey, sock.curve_secretkey = zmq.auth.load_certificate(spec.curve_client[1])
            sock.curve_serverkey = server_public
        if spec.endpoint.startswith("tcp://"):
            sock.setsockopt(zmq.HEARTBEAT_IVL, TCP_HEARTBEAT_MS)
            sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 3 * TCP_HEARTBEAT_MS)
        if before_connect:
            before_connect(sock)
        (sock.bind if spec.bind else sock.connect)(spec.endpoint)
        if spec.bind and spec.endpoint.endswith(":*"):
            # ZeroMQ picked a free port: say which (tests use this instead of guessing a free port).
            get_logger().info("socket_bound", endpoint=sock.getsockopt_string(zmq.LAST_ENDPOINT))
        self._sockets.append(sock)
        return sock

    def _curve_server(self, sock: zmq.Socket, secret_file: str, clients_dir: str) -> None:
        """CURVE encryption plus a ZAP handler that admits only the listed client keys."""
        if self._auth is None:
            self._auth = ThreadAuthenticator(self._ctx)
            self._auth.start()
            self._auth.configure_curve(domain="*", location=str(Path(clients_dir).expanduser()))
        sock.curve_publickey, sock.curve_secretkey = zmq.auth.load_certificate(str(Path(secret_file).expanduser()))
        sock.curve_server = True

    def close(self) -> None:
        for sock in self._sockets:
            sock.close(linger=0)
        self._sockets.clear()
        if self._auth is not None:
            self._auth.stop()
        self._ctx.term()


def bound_address(sock: zmq.Socket) -> str:
    return sock.getsockopt_string(zmq.LAST_ENDPOINT)


def send(sock: zmq.Socket, frame: Frame, stage: str, timeout_ms: int | None = None, to: bytes | None = None) -> bool:
    """Send one frame; False when it could not be queued within timeout_ms (0 = don't wait).
    `to`: on a ROUTER, the identity of the peer it is for (unknown peers' frames are dropped)."""
    parts = frames.encode(frame, stage) if to is None else [to, *frames.encode(frame, stage)]
    if timeout_ms is None:
        sock.send_multipart(parts, copy=False)
        return True
    if timeout_ms > 0 and not sock.poll(timeout_ms, zmq.POLLOUT):
        return False
    try:
        sock.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
    except zmq.Again:
        return False
    return True


def recv_parts(sock: zmq.Socket) -> list[bytes]:
    """One waiting multipart message (call after poll said it is readable)."""
    return sock.recv_multipart(flags=zmq.NOBLOCK)


def generate_certificates(directory: Path, name: str) -> tuple[Path, Path]:
    """A CURVE key pair as ZeroMQ certificate files: (public `.key`, secret `.key_secret`)."""
    public, secret = zmq.auth.create_certificates(str(directory), name)
    return Path(public), Path(secret)


class HandshakeWatch:
    """Records what happened to a connecting socket's handshakes (tests: proof of refusal)."""

    NAMES = {zmq.EVENT_HANDSHAKE_SUCCEEDED: "succeeded", zmq.EVENT_HANDSHAKE_FAILED_AUTH: "failed_auth",
             zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "failed_protocol",
             zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "failed_no_detail"}

    def __init__(self, sock: zmq.Socket) -> None:
        self._monitor = sock.get_monitor_socket()
        self.events: list[str] = []

    def poll(self) -> list[str]:
        while self._monitor.poll(0):
            event = recv_monitor_message(self._monitor)["event"]
            if event in self.NAMES:
                self.events.append(self.NAMES[event])
        return self.events

    def close(self) -> None:
        self._monitor.close(linger=0)


def send_raw(sock: zmq.Socket, parts: list[bytes]) -> None:
    """Send already-encoded parts (replay tools, fuzzing tests)."""
    sock.send_multipart(parts)


class Poller:
    """Poll several sockets with a timeout; returns the readable ones."""

    def __init__(self, sockets: list[zmq.Socket]) -> None:
        self._poller = zmq.Poller()
        self._disabled: set[int] = set()
        for sock in sockets:
            self._poller.register(sock, zmq.POLLIN)

    def add_fd(self, fd: int) -> None:
        """A plain file descriptor (a pipe's read end): `readable` returns it as the int."""
        self._poller.register(fd, zmq.POLLIN)

    def enable(self, sock: zmq.Socket | int, enabled: bool) -> None:
        """A disabled socket is not polled: its messages wait in ZeroMQ's queue (and then the peer's)."""
        if enabled == (id(sock) not in self._disabled):
            return  # called every pass: touch the poller only when the answer changes
        self._poller.modify(sock, zmq.POLLIN if enabled else 0)
        (self._disabled.discard if enabled else self._disabled.add)(id(sock))

    def readable(self, timeout_s: float) -> list[zmq.Socket]:
        return [s for s, _ in self._poller.poll(max(0, int(timeout_s * 1000)))]
