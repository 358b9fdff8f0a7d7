"""Print every transcript LUXA's speech front end publishes.

    .venv/bin/python examples/subscriber.py            # default endpoint from config.yaml
    .venv/bin/python examples/subscriber.py ipc:///run/user/1000/luxa-stt-1000/transcripts.sock
    .venv/bin/python examples/subscriber.py --source wyoming:   # only what Wyoming clients said

A plain pyzmq + msgpack client on purpose: other LUXA processes need neither this repository's
code nor Python to read the `transcript` topic (see "Transcript messages" in the README).
"""

import argparse
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
    parser = argparse.ArgumentParser(description="Print LUXA's transcripts as JSON lines.")
    parser.add_argument("endpoint", nargs="?", help="the sink's PUB endpoint (default: from config.yaml)")
    parser.add_argument("--source", default="", help="only transcripts whose `source` starts with this "
                        "(mic, file, wyoming:, openai:, wyoming:192.168.1.20)")
    args = parser.parse_args()
    endpoint = args.endpoint or default_endpoint()
    sock = zmq.Context().socket(zmq.SUB)
    sock.connect(endpoint)
    sock.setsockopt(zmq.SUBSCRIBE, b"transcript")
    print(f"listening on {endpoint}", file=sys.stderr)
    while True:
        topic, header, *_ = sock.recv_multipart()
        if topic != b"transcript":  # the subscription is a prefix: skip transcript.partial etc.
            continue
        message = msgpack.unpackb(header)
        if not message.get("source", "").startswith(args.source):
            continue
        print(json.dumps(message, ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main()
