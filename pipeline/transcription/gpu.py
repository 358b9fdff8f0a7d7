"""GPU discovery: pick the visible GPU with the most free memory, or say why none is usable.

CTranslate2 allocates outside torch's caching allocator, so memory is read from the driver
(cudaMemGetInfo through torch, which reports what NVML reports for the device).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class GpuInfo:
    """One visible CUDA device and its memory (bytes)."""
    index: int
    name: str
    free_bytes: int
    total_bytes: int


class GpuUnavailableError(RuntimeError):
    """No CUDA device, or none with enough free memory; permanent for the GPU worker."""


class NoGpuError(GpuUnavailableError):
    """No CUDA device visible at all: on a CPU-only machine the expected case, not a fault."""


def probe_gpus() -> list[GpuInfo]:
    """Every visible CUDA device with its free memory; [] without CUDA."""
    import ctranslate2

    if ctranslate2.get_cuda_device_count() == 0:
        return []  # no need to import torch (and pay its start-up) on a CPU-only machine
    import torch

    infos = []
    for index in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(index)
        infos.append(GpuInfo(index, torch.cuda.get_device_name(index), free, total))
    return infos


def device_labels() -> list[str]:
    """`cuda:N` for every visible device, or `cuda:0` alone where none is (the GPU worker's slot,
    so its VRAM series reads 0 instead of being absent); the same labels the engine reports."""
    try:
        import ctranslate2

        count = ctranslate2.get_cuda_device_count()
    except Exception:  # no CUDA runtime at all: nothing visible
        count = 0
    return [f"cuda:{i}" for i in range(max(1, count))]


def select_gpu(min_free_bytes: int, probe: Callable[[], list[GpuInfo]] = probe_gpus) -> GpuInfo:
    """The GPU with the most free memory, if it has at least `min_free_bytes` free."""
    gpus = probe()
    if not gpus:
        raise NoGpuError("no CUDA device is visible (no NVIDIA GPU, driver or CUDA runtime)")
    best = max(gpus, key=lambda g: g.free_bytes)
    if best.free_bytes < min_free_bytes:
        raise GpuUnavailableError(
            f"GPU {best.index} ({best.name}) has {best.free_bytes >> 20} MiB free, "
            f"below the configured floor of {min_free_bytes >> 20} MiB")
    return best


def release_cuda_cache() -> None:
    """Free what torch's allocator holds after a CUDA OOM; CTranslate2 frees on model unload."""
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # best effort: we are already handling an error
        pass


def is_cuda_error(err: BaseException) -> bool:
    text = str(err).lower()
    return "cuda" in text or "cublas" in text or "cudnn" in text or "out of memory" in text
