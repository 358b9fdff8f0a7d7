"""Who is at the other end of a socket: a ROUTER's peers by name, a CURVE client's admission.

A ROUTER port's messages carry the sender's identity; the runner hands a stage the port name
with the identity in it (`pool@<hex>`), and sends an output named so to that peer only. A CURVE
client (a remote worker) is told by the server's handshake whether its key was admitted; without
a log line a refused key is only silence, retried every 0.1 s for ever.
"""

from __future__ import annotations

from pipeline.transport import HandshakeWatch

PEER_SEP = "@"


def addressed(port: str, peer: bytes) -> str:
    """A ROUTER port's name for one peer (`pool@<identity hex>`): what `handle` is called with for a
    message from that peer, and the output port that sends to it."""
    return f"{port}{PEER_SEP}{peer.hex()}"


def split_addressed(port: str) -> tuple[str, bytes | None]:
    base, sep, peer = port.partition(PEER_SEP)
    return (base, bytes.fromhex(peer)) if sep else (port, None)


class HandshakeLog:
    """Logs each change of the handshake outcome of the CURVE client sockets it watches, once."""

    def __init__(self, log) -> None:
        self._log = log
        self._watched: list[tuple[str, HandshakeWatch, list]] = []  # (port, watch, [last outcome logged])

    def watcher(self, port: str):
        """For Transport.open's `before_connect`: watched from before the first handshake."""
        return lambda sock: self._watched.append((port, HandshakeWatch(sock), [None]))

    def check(self) -> None:
        for port, watch, last in self._watched:
            events = watch.poll()[:]
            watch.events.clear()  # a refused key retries for ever: keep only what is new
            if events and events[-1] != last[0]:
                last[0] = events[-1]
                (self._log.info if events[-1] == "succeeded" else self._log.error)(
                    "curve_handshake", port=port, outcome=events[-1])

    def close(self) -> None:
        """Before the context ends: it waits for every socket, monitors included."""
        for _, watch, _ in self._watched:
            watch.close()

