"""Print every transcript LUXA's speech front end publishes.

    .venv/bin/python examples/subscriber.py            # default endpoint from config.yaml
    .venv/bin/python examples/subscriber.py ipc:///run/user/1000/luxa-stt-1000/transcripts.sock
    .venv/bin/python examples/subscriber.py --source wyoming:   # only what Wyoming clients said

A plain pyzmq + msgpack client on purpose: other LUXA processes need neither this repository's
code nor Python to read the `transcript` topic (see "Transcript messages" in the README).
It also catches up on finals published while it was not connected (a supervisor restart gives
the sink a new socket): each final carries `pub_seq`, `transcript.history` says the last one, and
the missed ones are read from the sink's history file (README, "Catching up").
"""

import argparse
import json
import struct
import sys
from pathlib import Path

import msgpack
import zmq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def defaults() -> tuple[str, Path]:
    from pipeline import topology
    from pipeline.config import load_config

    cfg = load_config(ROOT / "config.yaml")
    return topology.transcripts(cfg, cfg.resolved_run_dir()), topology.history(cfg.resolved_run_dir())


def history_file(path: Path) -> list[dict]:
    """The sink's history: records of a 4-byte big-endian length and a msgpack map; a record cut
    short (being written) ends the read."""
    try:
        data = path.read_bytes()
    except OSError:
        return []
    records, at = [], 0
    while at + 4 <= len(data):
        (size,) = struct.unpack_from(">I", data, at)
        if at + 4 + size > len(data):
            break
        records.append(msgpack.unpackb(data[at + 4:at + 4 + size]))
        at += 4 + size
    return records


class Numbering:
    """What this subscriber has had of one history; the first message heard starts it."""

    def __init__(self, path: Path) -> None:
        self.path, self.history, self.last_seq = path, None, 0

    def missed(self, history: str, seq: int, heard: bool) -> list[dict]:
        """The finals before `seq` (up to it, for a `transcript.history` beacon) not had yet."""
        if history != self.history:
            self.last_seq = (seq - heard) if self.history is None else 0
            self.history = history
        upto, out = (seq if heard else seq + 1), []
        if upto - 1 > self.last_seq:  # a gap: read the file only then
            out = [r for r in history_file(self.path) if r.get("history") == history and self.last_seq < r["pub_seq"] < upto]
        self.last_seq = max([self.last_seq, seq if heard else 0] + [r["pub_seq"] for r in out])
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description="Print LUXA's transcripts as JSON lines.")
    parser.add_argument("endpoint", nargs="?", help="the sink's PUB endpoint (default: from config.yaml)")
    parser.add_argument("--history", type=Path, help="the sink's history file (default: from config.yaml)")
    parser.add_argument("--source", default="", help="only transcripts whose `source` starts with this "
                        "(mic, file, wyoming:, openai:, wyoming:192.168.1.20)")
    args = parser.parse_args()
    endpoint, history = args.endpoint, args.history
    if not (endpoint and history):
        default_endpoint, default_history = defaults()
        endpoint, history = endpoint or default_endpoint, history or default_history
    numbering = Numbering(history)
    sock = zmq.Context().socket(zmq.SUB)
    sock.connect(endpoint)
    sock.setsockopt(zmq.SUBSCRIBE, b"transcript")
    print(f"listening on {endpoint}", file=sys.stderr)
    while True:
        topic, header, *_ = sock.recv_multipart()
        message = msgpack.unpackb(header)
        if topic == b"transcript.history":
            finals = numbering.missed(message["history"], message["pub_seq"], heard=False)
        elif topic == b"transcript":  # the subscription is a prefix: skip transcript.partial
            seq = message.get("pub_seq", 0)
            if seq and seq <= numbering.last_seq and message.get("history") == numbering.history:
                continue  # had it already, from the history file
            finals = (numbering.missed(message["history"], seq, heard=True) if seq else []) + [message]
        else:
            continue
        for final in finals:
            if final.get("source", "").startswith(args.source):
                print(json.dumps(final, ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main()
