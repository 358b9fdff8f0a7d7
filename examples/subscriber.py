"""Print every transcript LUXA's speech front end publishes.

    .venv/bin/python examples/subscriber.py            # default endpoint from config.yaml
    .venv/bin/python examples/subscriber.py ipc:///run/user/1000/luxa-stt-1000/transcripts.sock

A plain pyzmq + msgpack client on purpose: other LUXA processes need neither this repository's
code nor Python to read the `transcript` topic (see "Transcript messages" in the README).
"""

import json
import sys
from pathlib import Path

import msgpack
import zmq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def default_endpoint() -> str:
    from pipeline import topology
    from pipeline.config import load_config

    cfg = load_config(ROOT / "config.yaml")
    return topology.transcripts(cfg, cfg.resolved_run_dir())


def main() -> None:
    endpoint = sys.argv[1] if len(sys.argv) > 1 else default_endpoint()
    sock = zmq.Context().socket(zmq.SUB)
    sock.connect(endpoint)
    sock.setsockopt(zmq.SUBSCRIBE, b"transcript")
    print(f"listening on {endpoint}", file=sys.stderr)
    while True:
        topic, header, *_ = sock.recv_multipart()
        if topic != b"transcript":  # the subscription is a prefix: skip transcript.partial etc.
            continue
        message = msgpack.unpackb(header)
        print(json.dumps(message, ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main()
