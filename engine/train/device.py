"""Device capabilities, the fast paths chosen from them, and what they do to the model and its inputs.

`choose_fast_paths` is a pure function of `DeviceCapabilities` and the run config, so every
decision (FlexAttention, bf16, torch.compile, FP8 head, fused Adam) is testable with fake GPUs.

Precision on CUDA (bf16): as in the original, only the embedding tables are stored in bf16, so the
activations are bf16 from the first layer on; every matrix keeps an fp32 master weight that
CastedLinear casts to bf16 per matmul. Muon orthogonalises in bf16 but adds its update to the fp32
weights, so small updates are never rounded away; the logits and the loss are computed in fp32.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import platform
import subprocess
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from torch import Tensor, nn

from engine.config import RunConfig
from engine.errors import DeviceError
from engine.model import GPT

# FP8 tensor-core matmuls (torch._scaled_mm) exist from Ada (sm89) and Hopper (sm90) on
FP8_MIN_CAPABILITY = (8, 9)
# bf16 tensor cores arrive with Ampere (sm80)
BF16_MIN_CAPABILITY = (8, 0)
# the original's allocator setting: fewer fragmentation OOMs as activation sizes change
ALLOCATOR_SETTING = ("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")


@dataclass(frozen=True, slots=True)
class DeviceCapabilities:
    """What the device of one rank can do; build fakes of it in tests."""

    device_type: str  # "cuda" | "cpu" | "mps"
    name: str
    count: int  # devices of this type visible to the process
    compute_capability: tuple[int, int] | None = None
    memory_bytes: int | None = None
    bf16: bool = False
    fp8: bool = False
    # Triton compiles FlexAttention's fused kernel and torch.compile's CUDA kernels
    triton: bool = False
    driver: str | None = None
    torch_version: str = torch.__version__
    cuda_version: str | None = torch.version.cuda


@dataclass(frozen=True, slots=True)
class FastPaths:
    """The paths one run takes, each with its reason in `reasons` (recorded in environment.json)."""

    attention: str  # "flex" | "sdpa"
    dtype: str  # "bfloat16" | "float32": activations and embedding tables
    compile: bool
    fp8_head: bool
    fused_adam: bool
    reasons: list[str] = field(default_factory=list)


def _capability_at_least(caps: DeviceCapabilities, minimum: tuple[int, int]) -> bool:
    return caps.compute_capability is not None and caps.compute_capability >= minimum


def _sm(caps: DeviceCapabilities) -> str:
    major, minor = caps.compute_capability or (0, 0)
    return f"sm{major}{minor}"


def choose_fast_paths(caps: DeviceCapabilities, run: RunConfig) -> FastPaths:
    """Pick attention, dtype, compile, FP8 head and fused Adam for `caps` under run.dtype / run.compile."""
    on_cuda = caps.device_type == "cuda"
    reasons: list[str] = []

    if on_cuda and caps.triton:
        attention = "flex"
        reasons.append("attention: FlexAttention with block masks (CUDA + Triton)")
    else:
        attention = "sdpa"
        why = "Triton is not installed" if on_cuda else f"no CUDA ({caps.device_type})"
        reasons.append(f"attention: SDPA with a dense mask ({why})")

    if run.dtype == "float32":
        dtype = "float32"
        reasons.append("dtype: float32 (run.dtype)")
    elif run.dtype == "bfloat16":
        if on_cuda and not caps.bf16:
            raise DeviceError(f"run.dtype is bfloat16 but the {caps.name} ({_sm(caps)}) has no bf16 support",
                              hint="use --set run.dtype=float32 (or auto)")
        dtype = "bfloat16"
        reasons.append("dtype: bfloat16 activations and embeddings, fp32 master weights (run.dtype)")
    elif on_cuda and caps.bf16:
        dtype = "bfloat16"
        reasons.append("dtype: bfloat16 activations and embeddings, fp32 master weights (CUDA with bf16)")
    else:
        dtype = "float32"
        why = f"the {caps.name} ({_sm(caps)}) has no bf16" if on_cuda else f"no CUDA ({caps.device_type})"
        reasons.append(f"dtype: float32 ({why})")

    if run.compile == "off":
        compile_model = False
        reasons.append("compile: off (run.compile)")
    elif run.compile == "on":
        if on_cuda and not caps.triton:
            raise DeviceError("run.compile is 'on' but Triton, which torch.compile needs on CUDA, is not installed",
                              hint="install triton (it ships with the CUDA builds of torch) or use --set run.compile=off")
        compile_model = True
        reasons.append("compile: on (run.compile)")
    elif on_cuda and caps.triton:
        compile_model = True
        reasons.append("compile: on (CUDA + Triton)")
    else:
        compile_model = False
        why = "Triton is not installed" if on_cuda else f"no CUDA ({caps.device_type}): compiling costs more than it saves"
        reasons.append(f"compile: off ({why})")

    fp8_head = False
    if not on_cuda:
        reasons.append("fp8 lm_head: off (no CUDA)")
    elif not caps.fp8:
        reasons.append(f"fp8 lm_head: off (the {caps.name} is {_sm(caps)}; FP8 matmuls need sm89 or newer), bf16 head")
    elif dtype != "bfloat16":
        reasons.append("fp8 lm_head: off (float32 run)")
    elif not compile_model:
        reasons.append("fp8 lm_head: off (compile is off, and the FP8 casts only pay off when fused)")
    else:
        fp8_head = True
        reasons.append(f"fp8 lm_head: on ({_sm(caps)} has FP8 tensor cores)")

    fused_adam = on_cuda
    reasons.append("adam: fused CUDA kernel" if fused_adam else "adam: foreach (no CUDA)")
    return FastPaths(attention, dtype, compile_model, fp8_head, fused_adam, reasons)


# ---------------------------------------------------------------------------------- detection


def _nvml_driver() -> str | None:
    """The driver version from NVML (nvidia-ml-py, the [gpu] extra); None without NVML or a driver."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        version = pynvml.nvmlSystemGetDriverVersion()
    except pynvml.NVMLError:
        return None
    return version.decode() if isinstance(version, bytes) else str(version)


def _nvidia_driver() -> str | None:
    """The NVIDIA driver version from NVML or, failing that, nvidia-smi; None when neither answers."""
    from_nvml = _nvml_driver()
    if from_nvml is not None:
        return from_nvml
    try:
        result = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = result.stdout.strip().splitlines()
    return lines[0].strip() if result.returncode == 0 and lines else None


def detect_capabilities(device: torch.device) -> DeviceCapabilities:
    """Capabilities of `device` (the rank's own device); queries CUDA only for a CUDA device."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        capability = (props.major, props.minor)
        has_fp8 = hasattr(torch, "float8_e4m3fn") and hasattr(torch, "_scaled_mm")
        return DeviceCapabilities(
            device_type="cuda", name=props.name, count=torch.cuda.device_count(), compute_capability=capability,
            memory_bytes=int(props.total_memory), bf16=capability >= BF16_MIN_CAPABILITY,
            fp8=has_fp8 and capability >= FP8_MIN_CAPABILITY,
            triton=importlib.util.find_spec("triton") is not None, driver=_nvidia_driver(),
        )
    if device.type == "mps":
        return DeviceCapabilities(device_type="mps", name="Apple MPS", count=1)
    return DeviceCapabilities(device_type=device.type, name=platform.processor() or platform.machine() or "cpu",
                              count=os.cpu_count() or 1)


# ---------------------------------------------------------------------------------- the model


def prepare_model_for_device(model: GPT, fast_paths: FastPaths) -> GPT:
    """Set the GPT's attention backend and FP8 head, and store its embedding tables in bf16 for a bf16 run."""
    model.attention_backend = fast_paths.attention
    model.use_fp8_head = fast_paths.fp8_head
    if fast_paths.dtype == "bfloat16":
        for module in model.modules():
            if isinstance(module, nn.Embedding):
                module.bfloat16()
    return model


def compile_for_training(model: GPT, fast_paths: FastPaths) -> nn.Module:
    """The module the training steps call: `model` compiled (static shapes) when the fast paths say so.

    The compiled wrapper shares the parameters; `model` itself stays uncompiled, so checkpoints keep
    plain keys and sampling (one more token each call) does not recompile.
    """
    # torch.compile returns an OptimizedModule (an nn.Module) for a module, whatever its annotation says
    return cast(nn.Module, torch.compile(model, dynamic=False)) if fast_paths.compile else model


def host_to_device(tensor: Tensor, device: torch.device) -> Tensor:
    """`tensor` (on the CPU) on `device`; on CUDA through pinned memory and a copy the host does not wait for."""
    if device.type != "cuda":
        return tensor.to(device)
    # the caching host allocator keeps the pinned copy alive until the transfer has finished
    return tensor.pin_memory().to(device, non_blocking=True)


@functools.lru_cache(maxsize=64)
def _window_tensor(blocks: int, device: torch.device) -> Tensor:
    # made outside inference mode: validation creates some, and training reuses them
    with torch.inference_mode(False):
        return torch.tensor(blocks, dtype=torch.int32, device=device)


def window_argument(blocks: int, fast_paths: FastPaths, device: torch.device) -> int | Tensor:
    """The long window for a forward call: a 0-d tensor for a compiled model, so a growing window never recompiles."""
    return _window_tensor(blocks, device) if fast_paths.compile else blocks


def configure_cuda_allocator(environ: dict[str, str] | Any = os.environ) -> None:
    """Set PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True unless the user set it; before CUDA's first allocation."""
    name, value = ALLOCATOR_SETTING
    environ.setdefault(name, value)
