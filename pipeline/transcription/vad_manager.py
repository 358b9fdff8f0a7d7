"""VADManager: the original request's VAD helper, for library callers of RobustSTTManager.

    vad = VADManager(config["vad"])          # the keys of config.yaml's `vad:` section; {} = defaults
    for start_ms, end_ms, samples in vad.process_audio(audio):  # 16 kHz mono float32
        ...

The same Silero model (through onnxruntime) and the same segmenter as the pipeline's VAD stage,
run over a whole clip instead of a stream, so the library and the pipeline agree on what speech is.
"""

from __future__ import annotations

import numpy as np

from pipeline.config import VadConfig
from pipeline.segmenter import Segmenter
from pipeline.silero import WINDOW_SAMPLES, SileroVad

SpeechSegment = tuple[float, float, np.ndarray]  # (start_ms, end_ms, samples)


class VADManager:
    """Finds the speech in a clip: `process_audio(samples) -> [(start_ms, end_ms, samples), ...]`."""

    def __init__(self, config: dict | VadConfig | None = None, sample_rate_hz: int = 16000) -> None:
        self.cfg = config if isinstance(config, VadConfig) else VadConfig.model_validate(config or {})
        if sample_rate_hz not in WINDOW_SAMPLES:
            raise ValueError(f"sample_rate_hz must be one of {tuple(WINDOW_SAMPLES)} (Silero VAD)")
        self.rate = sample_rate_hz
        self._vad = SileroVad()

    def process_audio(self, samples: np.ndarray) -> list[SpeechSegment]:
        """Speech segments of one clip, with the pipeline's pre-roll, hysteresis and minimum length."""
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        window = WINDOW_SAMPLES[self.rate]
        self._vad.reset()  # every clip is its own stream: no state from the previous one
        segmenter = Segmenter(self.cfg, self.rate)
        closed = []
        for start in range(0, samples.size, window):
            chunk = samples[start:start + window]
            if chunk.size < window:
                chunk = np.pad(chunk, (0, window - chunk.size))
            closed += segmenter.push(chunk, self._vad(chunk, self.rate))
        closed += segmenter.flush()
        to_ms = 1000 / self.rate
        return [(s.start_sample * to_ms, min(s.end_sample, samples.size) * to_ms, s.pcm[:samples.size - s.start_sample])
                for s in closed]

    def has_speech(self, samples: np.ndarray) -> bool:
        return bool(self.process_audio(samples))
