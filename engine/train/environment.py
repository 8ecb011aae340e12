"""`<run>/environment.json`: the machine, versions, device, chosen fast paths and code version of a run."""

from __future__ import annotations

import platform
import socket
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from engine.train.device import DeviceCapabilities, FastPaths


def git_sha(directory: Path | None = None) -> str | None:
    """HEAD of the git checkout holding nanogpt-tui's code, or None (an installed wheel, no git)."""
    directory = directory or Path(__file__).resolve().parent
    try:
        result = subprocess.run(["git", "-C", str(directory), "rev-parse", "HEAD"],
                                capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 and result.stdout.strip() else None


def environment_record(caps: DeviceCapabilities, fast_paths: FastPaths, world_size: int) -> dict[str, Any]:
    """What environment.json holds: machine, versions, device, chosen fast paths and code version."""
    return {
        "created_at": round(time.time(), 3),
        "hostname": socket.gethostname(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": caps.torch_version,
        "cuda": caps.cuda_version,
        "world_size": world_size,
        "device": {
            "type": caps.device_type, "name": caps.name, "count": caps.count,
            "compute_capability": list(caps.compute_capability) if caps.compute_capability else None,
            "memory_bytes": caps.memory_bytes, "driver": caps.driver,
            "bf16": caps.bf16, "fp8": caps.fp8, "triton": caps.triton,
        },
        "fast_paths": asdict(fast_paths),
        "git_sha": git_sha(),
    }


def write_environment(run_dir: Path, record: dict[str, Any]) -> Path:
    """Write `<run>/environment.json` atomically (rank 0 only calls this)."""
    from engine.runs.protocol import write_json

    path = run_dir / "environment.json"
    write_json(path, record)
    return path
