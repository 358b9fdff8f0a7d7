"""`python -m pipeline.keys DIR [--clients N]`: CURVE certificates for a public transcripts socket.

Writes DIR/server.key (give it to clients) and DIR/server.key_secret (the sink's), and one
key pair per client, DIR/client-N.key(_secret), with each client's public key copied into
DIR/authorized/ (the sink admits exactly the keys found there). Prints the config to add.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

from pipeline.transport import generate_certificates


def generate(directory: Path, clients: int = 1) -> dict:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    authorized = directory / "authorized"
    authorized.mkdir(mode=0o700, exist_ok=True)
    _, server_secret = generate_certificates(directory, "server")
    for n in range(1, clients + 1):
        public, secret = generate_certificates(directory, f"client-{n}")
        shutil.copy(public, authorized / public.name)
        os.chmod(secret, 0o600)
    os.chmod(server_secret, 0o600)
    return {"server_secret_key": str(server_secret), "authorized_clients_dir": str(authorized)}


def main() -> None:
    parser = argparse.ArgumentParser(description="generate ZeroMQ CURVE certificates for LUXA's transcripts socket")
    parser.add_argument("directory", type=Path)
    parser.add_argument("--clients", type=int, default=1, help="client key pairs to create and authorize")
    args = parser.parse_args()
    curve = generate(args.directory.resolve(), args.clients)
    print("add to config.yaml:\nendpoints:\n  transcripts: tcp://0.0.0.0:5556\n  curve:")
    for key, value in curve.items():
        print(f"    {key}: {value}")


if __name__ == "__main__":
    main()
