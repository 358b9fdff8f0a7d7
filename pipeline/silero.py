"""Silero VAD speech probabilities through onnxruntime, without torch.

The silero-vad wheel ships the ONNX export of the same model; onnxruntime comes with
faster-whisper. Skipping torch makes the VAD process start in a fraction of the time (what a
restart after a crash costs) and keeps it ~200 MiB smaller. The model is recurrent: it keeps
a state and the last 64 samples (32 at 8 kHz) of context between windows, as silero's own
wrapper does.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

CONTEXT_SAMPLES = {16000: 64, 8000: 32}
WINDOW_SAMPLES = {16000: 512, 8000: 256}


def model_path() -> Path:
    """The ONNX file inside the installed silero-vad package (found without importing it: that imports torch)."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("silero-vad is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "silero_vad.onnx"


class SileroVad:
    """Callable `(window, rate) -> probability of speech`; `reset()` between independent streams."""

    def __init__(self, path: Path | None = None) -> None:
        import onnxruntime

        opts = onnxruntime.SessionOptions()
        opts.inter_op_num_threads = opts.intra_op_num_threads = 1  # a 32 ms window needs no more
        self._session = onnxruntime.InferenceSession(str(path or model_path()), sess_options=opts,
                                                     providers=["CPUExecutionProvider"])
        self.reset()

    def reset(self) -> None:
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._context: np.ndarray | None = None
        self._rate = 0

    def __call__(self, window: np.ndarray, rate: int) -> float:
        if window.size != WINDOW_SAMPLES[rate]:
            raise ValueError(f"Silero takes {WINDOW_SAMPLES[rate]} samples at {rate} Hz, got {window.size}")
        if rate != self._rate:
            self.reset()
            self._rate = rate
            self._context = np.zeros(CONTEXT_SAMPLES[rate], dtype=np.float32)
        x = np.concatenate([self._context, window.astype(np.float32, copy=False)])[None, :]
        prob, self._state = self._session.run(None, {"input": x, "state": self._state,
                                                     "sr": np.array(rate, dtype=np.int64)})
        self._context = x[0, -CONTEXT_SAMPLES[rate]:]
        return float(prob[0, 0])
