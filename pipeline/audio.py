"""Robust audio conversion: anything libsndfile or PyAV reads -> 16 kHz mono float32.

No peak normalisation on purpose: it amplifies noise and silence into Whisper hallucinations.
Bad input raises an `AudioInputError` (a ValueError) whose `reason` is a metric label.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile
import soxr

TARGET_RATE_HZ = 16000
MAX_CHANNELS = 64


class AudioInputError(ValueError):
    """The caller's audio is unusable; a client error, never an engine failure."""
    reason = "bad_audio"


class EmptyAudioError(AudioInputError):
    """No samples at all."""
    reason = "empty"


class UndecodableAudioError(AudioInputError):
    """Not audio that libsndfile or FFmpeg can read."""
    reason = "undecodable"


class NonFiniteAudioError(AudioInputError):
    """NaN or infinite samples."""
    reason = "non_finite"


class AudioTooLongError(AudioInputError):
    """Longer than the configured bound."""
    reason = "too_long"


AudioSource = bytes | bytearray | memoryview | str | Path | np.ndarray


def load_audio(source: AudioSource, max_s: float, sample_rate_hz: int | None = None,
               target_hz: int = TARGET_RATE_HZ) -> np.ndarray:
    """Decode, downmix and resample to `target_hz` mono float32; validate on the way."""
    if isinstance(source, np.ndarray):
        samples, rate = _from_array(source, sample_rate_hz or target_hz)
    else:
        samples, rate = _decode(source, max_s)
    mono = samples.mean(axis=1) if samples.ndim == 2 else samples
    _check(mono, rate, max_s)
    if rate != target_hz:
        mono = soxr.resample(mono, rate, target_hz, quality="HQ")
    return np.ascontiguousarray(mono, dtype=np.float32)


def pcm_samples(pcm: bytes, sample_rate_hz: int, max_s: float) -> np.ndarray:
    """An utterance's wire PCM (mono float32) -> 16 kHz samples for the engine.

    What arrives on a worker's socket is checked once here: anyone who can reach the socket
    can send anything, and a NaN must be a client error, never an engine failure.
    """
    if len(pcm) % 4:
        raise AudioInputError(f"PCM buffer of {len(pcm)} bytes is not whole float32 samples")
    samples = np.frombuffer(pcm, dtype=np.float32)
    _check(samples, sample_rate_hz, max_s)
    if sample_rate_hz != TARGET_RATE_HZ:
        samples = soxr.resample(samples, sample_rate_hz, TARGET_RATE_HZ, quality="HQ")
    return np.ascontiguousarray(samples, dtype=np.float32)


def _from_array(array: np.ndarray, rate: int) -> tuple[np.ndarray, int]:
    if array.ndim not in (1, 2) or (array.ndim == 2 and array.shape[1] > MAX_CHANNELS):
        raise AudioInputError(f"expected a 1-D or (samples, channels) array, got shape {array.shape}")
    if np.issubdtype(array.dtype, np.integer):
        scale = float(np.iinfo(array.dtype).max) + 1.0
        return array.astype(np.float32) / scale, rate
    if not np.issubdtype(array.dtype, np.floating):
        raise AudioInputError(f"unsupported sample type {array.dtype}")
    return array.astype(np.float32, copy=False), rate


def _decode(source: AudioSource, max_s: float) -> tuple[np.ndarray, int]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise EmptyAudioError("audio is empty (0 bytes)")
        opened = lambda: io.BytesIO(bytes(source))  # noqa: E731 - reopened for the PyAV fallback
    else:
        path = Path(source)
        if not path.is_file():
            raise UndecodableAudioError(f"{path}: no such file")
        if path.stat().st_size == 0:
            raise EmptyAudioError(f"{path}: file is empty")
        opened = lambda: str(path)  # noqa: E731
    try:
        return _decode_soundfile(opened(), max_s)
    except soundfile.LibsndfileError:
        return _decode_pyav(opened(), max_s)


def _decode_soundfile(handle, max_s: float) -> tuple[np.ndarray, int]:
    with soundfile.SoundFile(handle) as f:
        if f.channels > MAX_CHANNELS:
            raise UndecodableAudioError(f"{f.channels} channels is more than {MAX_CHANNELS}")
        if f.frames > 0 and f.samplerate > 0 and f.frames / f.samplerate > max_s:
            raise AudioTooLongError(f"audio lasts {f.frames / f.samplerate:.1f} s, more than {max_s:.0f} s")
        data = f.read(frames=int(max_s * f.samplerate) + 1, dtype="float32", always_2d=True)
        return data, f.samplerate


def _decode_pyav(handle, max_s: float) -> tuple[np.ndarray, int]:
    """Formats libsndfile lacks (mp3 on old builds, m4a, ...) through FFmpeg."""
    import av  # faster-whisper's own dependency; imported lazily, capture rarely needs it

    try:
        with av.open(handle, mode="r", metadata_errors="ignore") as container:
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono", rate=TARGET_RATE_HZ)
            chunks, total = [], 0
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
                    total += chunks[-1].size
                if total > max_s * TARGET_RATE_HZ:
                    raise AudioTooLongError(f"audio lasts more than {max_s:.0f} s")
    except (av.error.FFmpegError, IndexError, ValueError) as err:
        if isinstance(err, AudioInputError):
            raise
        raise UndecodableAudioError(f"cannot decode audio: {err}") from None
    if not chunks:
        raise EmptyAudioError("no audio samples decoded")
    return np.concatenate(chunks), TARGET_RATE_HZ


def _check(mono: np.ndarray, rate: int, max_s: float) -> None:
    if rate <= 0 or rate > 768000:
        raise UndecodableAudioError(f"implausible sample rate {rate} Hz")
    if mono.size == 0:
        raise EmptyAudioError("audio has no samples")
    if mono.size / rate > max_s:
        raise AudioTooLongError(f"audio lasts {mono.size / rate:.1f} s, more than {max_s:.0f} s")
    if not np.isfinite(mono).all():
        raise NonFiniteAudioError("audio contains NaN or infinite samples")
