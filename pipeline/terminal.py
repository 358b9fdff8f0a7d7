"""What a person sees on stdout: a live line that the interim text rewrites, and each final on a
line of its own with how long after the end of the utterance it came. Programs get JSON lines,
one per final, exactly as before (`--json`, or whenever stdout is not a terminal)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import time
from typing import TextIO

from pipeline import frames

CLEAR_LINE = "\r\x1b[2K"
DIM, BOLD, RESET = "\x1b[2m", "\x1b[1m", "\x1b[0m"


def transcript_json(t: frames.Transcript) -> str:
    """The documented stdout form: the Transcript fields as one JSON object."""
    return json.dumps(dataclasses.asdict(t), ensure_ascii=False)


class TranscriptView:
    """`live`: the terminal view; `json`: one JSON object per final (partials are not printed)."""

    def __init__(self, mode: str, out: TextIO | None = None) -> None:
        if mode not in ("live", "json"):
            raise ValueError(f"unknown transcript view {mode!r} (live or json)")
        self.mode = mode
        self.out = out or sys.stdout

    def partial(self, t: frames.Transcript) -> None:
        if self.mode != "live" or not t.text.strip():
            return
        width = max(20, shutil.get_terminal_size((100, 20)).columns - 4)
        text = t.text.strip()
        shown = text if len(text) <= width else "…" + text[-(width - 1):]  # the newest words stay in view
        self._write(f"{CLEAR_LINE}{DIM}{shown}{RESET}")

    def final(self, t: frames.Transcript) -> None:
        if self.mode == "json":
            self._write(transcript_json(t) + "\n")
            return
        after_ms = max(0.0, (t.t_published_wall_s - t.t_closed_wall_s) * 1000)
        clock = time.strftime("%H:%M:%S", time.localtime(t.t_published_wall_s or time.time()))
        self._write(f"{CLEAR_LINE}{DIM}{clock}{RESET} {BOLD}{t.text.strip()}{RESET}  "
                    f"{DIM}({t.audio_duration_s:.1f} s, ready {after_ms:.0f} ms after the turn closed){RESET}\n")

    def _write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()
