"""The benchmark corpus: Debian's Asterisk French prompts (real voice, 8 kHz) and their texts."""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

PACKAGES = {"fr": ("asterisk-core-sounds-fr-wav", "asterisk-core-sounds-fr")}
SOUNDS = Path("/usr/share/asterisk/sounds")
TEXTS = "/usr/share/doc/asterisk-core-sounds-{lang}/core-sounds-{lang}.txt.gz"


@dataclass(frozen=True)
class Prompt:
    name: str
    path: Path
    text: str


def ensure_installed(language: str = "fr") -> None:
    """Install the Debian packages when missing (root, or sudo)."""
    if (SOUNDS / language).is_dir() and Path(TEXTS.format(lang=language)).exists():
        return
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    print(f"bench: installing {' '.join(PACKAGES[language])} (Debian)", file=sys.stderr)
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True)
    subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", *PACKAGES[language]], check=True,
                   env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def load_prompts(language: str = "fr", min_words: int = 3) -> list[Prompt]:
    """Every prompt with a plain-text reference of at least `min_words` words, sorted by name."""
    prompts = []
    with gzip.open(TEXTS.format(lang=language), "rt", encoding="utf-8") as f:
        for line in f:
            name, sep, text = line.partition(":")
            text = text.strip().strip("“”\"")
            path = SOUNDS / language / f"{name.strip()}.wav"
            if not sep or line.startswith(";") or re.search(r"[\[\](){}]", text) or not path.exists():
                continue
            if len(re.findall(r"\w+", text)) >= min_words:
                prompts.append(Prompt(name.strip(), path, text))
    return sorted(prompts, key=lambda p: p.name)


def write_stream(prompts: list[Prompt], path: Path, pause_s: float = 1.0) -> list[float]:
    """The prompts as one 16 kHz recording with `pause_s` of silence around each, as a microphone
    would hear them said one after another; returns where each prompt starts (s)."""
    import numpy as np
    import soundfile

    from pipeline.audio import load_audio

    pause = np.zeros(int(pause_s * 16000), dtype=np.float32)
    parts, offsets, position = [pause], [], pause.size
    for prompt in prompts:
        audio = load_audio(prompt.path, 600)
        offsets.append(position / 16000)
        parts += [audio, pause]
        position += audio.size + pause.size
    soundfile.write(path, np.concatenate(parts), 16000, subtype="PCM_16")
    return offsets
