"""`python supervisor.py`'s command line: its options, and what they change in the config."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.testmode import TEST_RECORDING

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / "config.yaml"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="LUXA speech front end supervisor")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None)
    parser.add_argument("--source", help="play this audio file or folder instead of the microphone, then exit")
    parser.add_argument("--test-mode", action="store_true", help="play the bundled French recording and check it")
    parser.add_argument("--fast", action="store_true", help="file sources: as fast as the pipeline takes them")
    parser.add_argument("--loop", action="store_true", help="file sources: play them again and again until stopped")
    parser.add_argument("--run-dir", help="private runtime directory (sockets, metrics, config snapshot)")
    parser.add_argument("--keep-running", action="store_true", help="after a --source is done, keep serving until stopped")
    parser.add_argument("--quiet", action="store_true", help="do not print transcripts on stdout")
    parser.add_argument("--json", action="store_true",
                        help="transcripts on stdout as JSON lines even on a terminal (the default when it is not one)")
    parser.add_argument("--log-format", choices=("auto", "console", "json"), default="auto",
                        help="stderr: readable lines on a terminal and JSON lines otherwise (auto), or either always")
    parser.add_argument("--list-devices", action="store_true", help="list audio input devices and exit")
    parser.add_argument("--role", choices=("pipeline", "worker"), default="pipeline",
                        help="worker: run and supervise only this machine's transcription workers, for the "
                             "pipeline on another host they --connect to")
    parser.add_argument("--connect", metavar="tcp://HOST:PORT", help="--role worker: that pipeline's transcribe.pool.listen")
    parser.add_argument("--curve", nargs=2, metavar=("SERVER_KEY", "CLIENT_SECRET_KEY"),
                        help="--role worker: its dispatcher's public certificate and this host's secret one")
    args = parser.parse_args(argv)
    if args.role == "worker" and not args.connect:
        parser.error("--role worker needs --connect tcp://HOST:PORT (the pipeline's transcribe.pool.listen)")
    if args.connect and args.role != "worker":
        parser.error("--connect is for --role worker")
    return args


def remote_worker_flags(args: argparse.Namespace) -> list[str]:
    """What each supervised worker of `--role worker` is started with."""
    if args.role != "worker":
        return []
    return ["--connect", args.connect, *(["--curve", *args.curve] if args.curve else [])]


def overrides_from(args: argparse.Namespace) -> dict:
    audio: dict = {}
    if args.test_mode:
        audio["source"] = str(TEST_RECORDING)
    elif args.source:
        audio["source"] = str(Path(args.source).resolve())
    if args.fast:
        audio["pace"] = "fast"
    if args.loop:
        audio["loop"] = True
    return {"audio": audio, **({"run_dir": args.run_dir} if args.run_dir else {})}


def transcript_view(args: argparse.Namespace) -> str | None:
    """What the sink prints on stdout: nothing, a live view for a person, or JSON lines for a program."""
    if args.quiet:
        return None
    return "json" if args.json or not sys.stdout.isatty() else "live"
