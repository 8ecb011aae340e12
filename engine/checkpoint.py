"""Checkpoints: atomic save with a JSON sidecar, safe load (weights_only), listing without weights.

Format 1: `{"format": 1, "step", "model", "optimizers", "config", "tokenizer", "data_position",
"tokens_seen", "train_time_s"}`. The sidecar `step_NNNNNN.json` is written after the weights, so a
sidecar always points at a complete `.pt`; listing reads only sidecars.
"""

from __future__ import annotations

import json
import pickle
import time
import types
import zipfile
from pathlib import Path
from typing import Any

from engine.atomic import atomic_write, atomic_write_text
from engine.errors import CheckpointError, DeviceError
from engine.runs.protocol import CheckpointEntry, list_checkpoint_files

FORMAT_VERSION = 1
ORIGINAL_PREFIX = "_orig_mod."


def checkpoint_name(step: int) -> str:
    return f"step_{step:06d}"


def save_checkpoint(directory: Path, step: int, payload: dict[str, Any], metadata: dict[str, Any]) -> Path:
    """Write `step_NNNNNN.pt` atomically, then its sidecar; returns the .pt path."""
    import torch

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{checkpoint_name(step)}.pt"
    payload = {"format": FORMAT_VERSION, "step": step, **payload}
    try:
        atomic_write(path, lambda handle: torch.save(payload, handle))
    except OSError as err:
        raise CheckpointError(
            f"could not write checkpoint {path}: {err.strerror or err}",
            hint="free disk space or check permissions; the previous checkpoint is kept",
        ) from err
    sidecar = {
        "step": step,
        "created_at": round(time.time(), 3),
        "size_bytes": path.stat().st_size,
        **metadata,
    }
    try:
        atomic_write_text(path.with_suffix(".json"), json.dumps(sidecar, indent=1, default=str))
    except OSError as err:
        path.unlink(missing_ok=True)
        raise CheckpointError(
            f"could not write checkpoint metadata for {path}: {err.strerror or err}",
            hint="free disk space or check permissions; the previous checkpoint is kept",
        ) from err
    return path


class UnknownObject:
    """Stand-in for a pickled object whose class is not importable here (e.g. the original's Hyperparameters)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, dict):
            self.__dict__.update(state)
        else:
            self.state = state


class _TolerantUnpickler(pickle.Unpickler):
    """Used only with trust_pickle: classes from modules that are not installed (the original's `model`
    module, a script's `__main__`) load as `UnknownObject`s instead of failing the whole file."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError):
            return type(name, (UnknownObject,), {"__module__": module, "__qualname__": name})


def _tolerant_pickle_module() -> types.ModuleType:
    module = types.ModuleType("nanogpt_tui_tolerant_pickle")
    module.Unpickler = _TolerantUnpickler  # type: ignore[attr-defined]
    module.load = lambda handle, **kwargs: _TolerantUnpickler(handle, **kwargs).load()  # type: ignore[attr-defined]
    return module


# the start of torch.save's legacy format: a pickled magic number
_LEGACY_MAGIC = b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19."
NOT_A_CHECKPOINT = {
    "empty": "the file is empty (0 bytes)",
    "pickle": "it is a plain Python pickle, not a file written by torch.save (and unpickling it could run code)",
    "unknown": "it does not start like a PyTorch file (neither a zip archive nor torch's legacy format)",
}


def file_kind(path: Path) -> str:
    """What the first bytes say: "zip" (torch.save), "legacy" (old torch.save), "pickle", "empty" or "unknown"."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(_LEGACY_MAGIC))
    except OSError as err:
        raise CheckpointError(f"cannot read checkpoint {path}: {err.strerror or err}",
                              hint="check the file's permissions") from err
    if not head:
        return "empty"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head == _LEGACY_MAGIC[:len(head)]:
        return "legacy"
    # a pickle starts with the PROTO opcode and its protocol number (2 to 5)
    return "pickle" if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05") else "unknown"


def _damaged(path: Path, detail: str) -> CheckpointError:
    """A file that starts like a PyTorch checkpoint but cannot be read to the end."""
    detail = detail.split(". ")[0]  # torch's zip reader adds paragraphs of advice after the reason
    return CheckpointError(f"{path} is not a readable checkpoint: it is truncated or damaged ({detail})",
                           hint="if a run was killed while saving, use the previous checkpoint")


def read_checkpoint_file(path: Path, *, map_location: str = "cpu", trust_pickle: bool = False) -> dict[str, Any]:
    """torch.load with weights_only=True unless the user explicitly trusts the file's pickle.

    A trusted file may run code while it loads; that is what trusting it means, so only the
    user's explicit opt-in (--trust-pickle, a confirm in the UI) may set trust_pickle.
    """
    import torch

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a checkpoint file", hint="give the path of a .pt file or a run name")
    kind = file_kind(path)
    if kind in ("empty", "pickle", "unknown"):
        raise CheckpointError(f"{path} is not a readable checkpoint: {NOT_A_CHECKPOINT[kind]}",
                              hint="give a .pt file written by nanogpt-tui, modded-nanogpt or torch.save")
    try:
        if trust_pickle:
            data = torch.load(path, map_location=map_location, weights_only=False,
                              pickle_module=_tolerant_pickle_module())
        else:
            data = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        text = str(err)
        # a whole archive whose pickle the safe unpickler refuses holds objects (or opcodes) beyond
        # plain weights; a refusal without a whole archive around it means damaged bytes
        if "Unsupported global" in text or zipfile.is_zipfile(path):
            raise CheckpointError(
                f"{path} contains pickled Python objects, which could run code when loaded",
                hint="only if you trust where the file came from, load it with --trust-pickle",
            ) from err
        lines = text.split("WeightsUnpickler error:", 1)[-1].splitlines()
        raise _damaged(path, next((line.strip() for line in lines if line.strip()), "unpickling failed")) from err
    except OSError as err:
        raise CheckpointError(f"cannot read checkpoint {path}: {err.strerror or err}",
                              hint="check the file's permissions") from err
    except torch.cuda.OutOfMemoryError as err:
        # a RuntimeError too, but the file is fine: the device it loads onto is full
        raise DeviceError(f"out of memory while loading {path} onto {map_location}: {str(err).splitlines()[0]}",
                          hint="close what else uses the GPU, or load it on the CPU (--device cpu)") from err
    except RuntimeError as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        if _device_problem(first):
            raise DeviceError(f"cannot load {path} onto {map_location}: {first}",
                              hint="load it on the CPU (--device cpu), or check the GPU and its driver") from err
        raise _damaged(path, first) from err
    # a cut-off file makes the unpickler fail in many ways, depending on where the bytes end
    except (EOFError, zipfile.BadZipFile, ValueError, IndexError, KeyError, TypeError) as err:
        raise _damaged(path, str(err).splitlines()[0] if str(err) else type(err).__name__) from err
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} holds a {type(data).__name__}, expected a checkpoint dictionary")
    return data


def _device_problem(message: str) -> bool:
    """A RuntimeError about the device (its memory, CUDA, the driver) rather than about the file's bytes."""
    lowered = message.lower()
    return any(sign in lowered for sign in ("out of memory", "cuda", "mps", "device-side", "hip error"))


def strip_prefix(state_dict: dict[str, Any], prefix: str = ORIGINAL_PREFIX) -> dict[str, Any]:
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state_dict.items()}


def load_state_into(model: Any, state_dict: dict[str, Any], source: str) -> None:
    """Load weights, turning key and shape mismatches into one readable CheckpointError."""
    state_dict = strip_prefix(state_dict)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} (e.g. {unexpected[0]})")
        raise CheckpointError(f"{source} does not fit this model: {'; '.join(parts)} parameter(s)")
    for key, tensor in expected.items():
        found = tuple(state_dict[key].shape)
        if tuple(tensor.shape) != found:
            raise CheckpointError(
                f"{source} does not fit this model: {key} has shape {found}, expected {tuple(tensor.shape)}",
                hint="the checkpoint was made for a model of another size",
            )
    model.load_state_dict(state_dict)


def load_checkpoint(model: Any, checkpoint_path: str | Path, map_location: str = "cpu", *,
                    trust_pickle: bool = False) -> dict[str, Any]:
    """Load weights from our format, an original `state_step*.pt` (the original's signature) or, with
    trust_pickle, the original's finetune.py output (`model_state_dict`)."""
    data = read_checkpoint_file(Path(checkpoint_path), map_location=map_location, trust_pickle=trust_pickle)
    weights = data.get("model", data.get("model_state_dict"))
    if not isinstance(weights, dict):
        raise CheckpointError(
            f"{checkpoint_path} has no model weights (keys: {', '.join(map(str, list(data)[:6]))})",
            hint="expected a nanogpt-tui or modded-nanogpt checkpoint",
        )
    load_state_into(model, weights, str(checkpoint_path))
    return data


def list_checkpoints(directory: Path) -> list[CheckpointEntry]:
    """Complete checkpoints (a .pt with its sidecar) in step order; temp files are never listed."""
    return list_checkpoint_files(directory)[0]


def latest_checkpoint(directory: Path) -> CheckpointEntry | None:
    checkpoints = list_checkpoints(directory)
    return checkpoints[-1] if checkpoints else None
