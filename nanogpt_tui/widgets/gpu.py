"""GPU utilisation and memory through NVML (the optional `nvidia-ml-py` extra); Textual-free."""

from __future__ import annotations

from nanogpt_tui.messages import GpuStats


def read_gpu_stats() -> tuple[GpuStats, ...] | None:
    """Every device NVML sees, or None when NVML is not installed or finds no driver."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return None
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


def format_gpu_stats(stats: tuple[GpuStats, ...] | None) -> str:
    if stats is None:
        return "GPU: not monitored (needs the gpu extra, nvidia-ml-py)"
    if not stats:
        return "GPU: none found"
    gib = 1024**3
    return "\n".join(
        f"GPU{s.index} {s.utilisation_pct:3d}%  {s.memory_used / gib:.1f}/{s.memory_total / gib:.0f} GiB"
        for s in stats
    )
