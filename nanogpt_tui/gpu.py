"""GPU utilisation and memory through NVML (the optional `nvidia-ml-py` extra); Textual-free."""

from __future__ import annotations

import glob
from pathlib import Path

from nanogpt_tui.messages.dashboard import GpuStats

NO_GPU = "GPU: none on this machine (training runs on the CPU)"
NO_NVML = "GPU: not monitored; install the gpu extra for its load and memory: pip install 'nanogpt-tui[gpu]'"
NO_DRIVER = "GPU: none usable (the NVIDIA driver does not answer)"


def nvidia_gpu_present() -> bool:
    """Whether the system shows an NVIDIA GPU (its driver's device files), without NVML or torch."""
    return bool(glob.glob("/dev/nvidia[0-9]*")) or Path("/proc/driver/nvidia/gpus").is_dir()


def read_gpu_stats() -> tuple[GpuStats, ...] | str:
    """Every device NVML sees, or the sentence that says why there is nothing to show.

    The gpu extra is suggested only where a GPU exists: on a machine without one, there is no GPU to say.
    """
    try:
        import pynvml
    except ImportError:
        return NO_NVML if nvidia_gpu_present() else NO_GPU
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return NO_DRIVER if nvidia_gpu_present() else NO_GPU
    try:
        stats = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            name = pynvml.nvmlDeviceGetName(handle)
            stats.append(GpuStats(
                index=index,
                name=name.decode() if isinstance(name, bytes) else name,
                utilisation_pct=int(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu),
                memory_used=int(memory.used),
                memory_total=int(memory.total),
            ))
        return tuple(stats)
    finally:
        pynvml.nvmlShutdown()


def format_gpu_stats(stats: tuple[GpuStats, ...] | str) -> str:
    if isinstance(stats, str):
        return stats
    if not stats:
        return NO_GPU
    gib = 1024**3
    return "\n".join(
        f"GPU{s.index} {s.utilisation_pct:3d}%  {s.memory_used / gib:.1f}/{s.memory_total / gib:.0f} GiB"
        for s in stats
    )
