"""Build a ready model from a checkpoint file alone, whatever wrote it, and import foreign ones as runs.

Three formats:
- ours (`{"format": 1, "config", "tokenizer", "model", …}`): config and tokenizer are inside;
- original modded-nanogpt `state_step*.pt` (`{"step", "code", "model", "optimizers"}`, keys
  prefixed `_orig_mod.`): the shape is inferred from the tensors, the tokenizer is GPT-2;
- the original's `finetune.py` output (`{"model_state_dict", "optimizer_state_dict", "hyperparameters"}`),
  which pickles a Python object and so loads only with trust_pickle.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.checkpoint import (
    load_state_into,
    read_checkpoint_file,
    save_checkpoint,
    strip_prefix,
)
from engine.config import (
    GPT2_EOT_ID,
    GPT2_VOCAB_SIZE,
    Hyperparameters,
    ModelConfig,
    config_hash,
    from_dict,
    preset,
    save_toml,
    to_dict,
)
from engine.errors import CheckpointError, ConfigError, RunError
from engine.runs.protocol import ORIGINAL_FINETUNE_FORMAT

log = logging.getLogger(__name__)

# the values are stored (a sidecar's source_format) and stay as they are
OURS, ORIGINAL, ORIGINAL_FINETUNE = "nanogpt-tui", "modded-nanogpt", ORIGINAL_FINETUNE_FORMAT
ORIGINAL_HEAD_DIM = 128  # fixed in modded-nanogpt's attention
# the longest context a generator gets by default; the KV cache is allocated for it up front
MAX_DEFAULT_CONTEXT = 4096
# window patterns of the known original models; other depths get long windows every fourth layer and last
KNOWN_WINDOW_PATTERNS = {12: "LSSSLSSLSSSL", 16: "LSSSLSSSLSSSLSSL"}
_LAYER_KEY = re.compile(r"^blocks\.(\d+)\.")
_LATER_RECORD_KEYS = ("qkvo_w", "lm_head_w", "scalars", "fc_w")


@dataclass
class LoadedCheckpoint:
    """A model with its weights (fp32, CPU, eval mode) and what is needed to use it."""

    path: Path
    model: Any  # engine.model.GPT
    config: ModelConfig
    tokenizer_payload: dict[str, str]
    step: int
    source_format: str
    hyperparameters: dict[str, Any] | None  # to_dict(Hyperparameters) for our own checkpoints
    notes: list[str] = field(default_factory=list)  # what was inferred or assumed, for the user
    # each weight's dtype in the file (the model itself is fp32), so writing it again keeps the file's size
    dtypes: dict[str, Any] = field(default_factory=dict)

    def stored_state_dict(self) -> dict[str, Any]:
        """The model's weights in the dtypes the source file held them in (bf16 embeddings stay bf16)."""
        return {key: tensor.to(self.dtypes.get(key, tensor.dtype))
                for key, tensor in self.model.state_dict().items()}

    @property
    def trained_length(self) -> int | None:
        """The longest rows the model was trained on (train.train_seq_len), when the checkpoint says.

        A fine-tune's rows are cut to MAX_FINETUNE_SEQ_LEN: at that length its parent trained on
        at least as much, how much more is not recorded, so no length is claimed.
        """
        from engine.train.finetune import MAX_FINETUNE_SEQ_LEN

        hyperparameters = self.hyperparameters or {}
        train = hyperparameters.get("train", {})
        seq_len = train.get("train_seq_len") if isinstance(train, dict) else None
        if not isinstance(seq_len, int) or seq_len <= 1:
            return None
        finetune = hyperparameters.get("finetune", {})
        if isinstance(finetune, dict) and finetune.get("from_checkpoint") and seq_len >= MAX_FINETUNE_SEQ_LEN:
            return None
        return seq_len

    @property
    def context_length(self) -> int:
        """Default generation context (what a chat keeps): any length works since attention is capped
        at the trained length (see load_model); this bounds the prompt a dropped turn re-reads."""
        return MAX_DEFAULT_CONTEXT


def detect_format(data: dict[str, Any], source: str) -> str:
    """Which writer made this checkpoint dictionary; CheckpointError naming what was found otherwise."""
    if "model_state_dict" in data:
        return ORIGINAL_FINETUNE
    if isinstance(data.get("model"), dict):
        return OURS if "config" in data else ORIGINAL
    keys = ", ".join(map(str, list(data)[:6])) or "nothing"
    raise CheckpointError(
        f"{source} is not a model checkpoint: expected a 'model' or 'model_state_dict' entry, found {keys}",
        hint="give a nanogpt-tui checkpoint, a modded-nanogpt state_step*.pt or the original's finetune.py output",
    )


def window_pattern_for(num_layers: int) -> str:
    return KNOWN_WINDOW_PATTERNS.get(num_layers) or "".join(
        "L" if layer % 4 == 0 or layer == num_layers - 1 else "S" for layer in range(num_layers)
    )


def infer_model_config(state_dict: dict[str, Any], source: str = "checkpoint") -> tuple[ModelConfig, list[str]]:
    """The ModelConfig of an original state_dict from tensor shapes, and notes on what was assumed."""
    weights = strip_prefix(state_dict)
    later = next((key for key in weights if key.rsplit(".", 1)[-1] in _LATER_RECORD_KEYS), None)
    if later is not None:
        raise CheckpointError(
            f"{source} is from a later modded-nanogpt record (it has {later}), whose layout cannot be imported",
            hint="import checkpoints of the original's model.py layout (qkv_w, c_fc, c_proj, lm_head.weight)",
        )
    for key in ("embed.weight", "lm_head.weight", "skip_weights"):
        if key not in weights:
            raise CheckpointError(f"{source} lacks {key}, which every modded-nanogpt model has",
                                  hint="is it a checkpoint of another architecture?")
    vocab_size, model_dim = (int(n) for n in weights["embed.weight"].shape)
    layers = {int(m.group(1)) for key in weights if (m := _LAYER_KEY.match(key))}
    num_layers = max(layers) + 1 if layers else 0
    if layers != set(range(num_layers)) or num_layers == 0 or num_layers % 2:
        raise CheckpointError(f"{source} has blocks {sorted(layers)}, expected an even number of layers 0..N-1")
    attention = [layer for layer in range(num_layers) if f"blocks.{layer}.attn.qkv_w" in weights]
    if not attention:
        raise CheckpointError(f"{source} has no attention weights (blocks.N.attn.qkv_w)")
    inner_dim = int(weights[f"blocks.{attention[0]}.attn.qkv_w"].shape[1])
    if inner_dim % ORIGINAL_HEAD_DIM:
        raise CheckpointError(f"{source}: attention width {inner_dim} is not a multiple of the {ORIGINAL_HEAD_DIM}-dim heads")
    num_value_embeds = sum(1 for key in weights if re.fullmatch(r"value_embeds\.\d+\.weight", key))
    bos_id = GPT2_EOT_ID if vocab_size >= GPT2_VOCAB_SIZE else vocab_size - 1
    config = ModelConfig(
        vocab_size=vocab_size, num_layers=num_layers, num_heads=inner_dim // ORIGINAL_HEAD_DIM,
        head_dim=ORIGINAL_HEAD_DIM, model_dim=model_dim, num_value_embeds=num_value_embeds,
        no_attention_layers=tuple(layer for layer in range(num_layers) if layer not in attention),
        window_pattern=window_pattern_for(num_layers), bos_id=bos_id,
    )
    notes = [
        (f"inferred from the tensor shapes: {num_layers} layers, {config.num_heads} heads of {ORIGINAL_HEAD_DIM}, "
         f"dim {model_dim}, vocabulary {vocab_size}, {num_value_embeds} value embedding(s), "
         f"no attention in layer(s) {list(config.no_attention_layers) or 'none'}"),
        (f"assumed: windows {config.window_pattern} (long {config.max_window_tokens} tokens, half for short), "
         f"blocks of {config.attn_block_size}, the GPT-2 tokenizer"),
    ]
    if vocab_size < GPT2_VOCAB_SIZE:
        notes.append(f"the vocabulary ({vocab_size}) is smaller than GPT-2's; document separator assumed at {bos_id}")
    return config, notes


def build_model(config: ModelConfig, state_dict: dict[str, Any], source: str) -> Any:
    """A GPT of `config` holding the given weights (fp32, CPU, eval mode); allocated once, not initialised."""
    import torch

    from engine.model import GPT

    with torch.device("meta"):
        model = GPT(config)
    model.to_empty(device="cpu")
    model.rotary.build(model.rotary.cos.size(0))  # non-persistent tables are not in the state_dict
    load_state_into(model, state_dict, source)
    return model.float().eval()


def stored_dtypes(state_dict: dict[str, Any]) -> dict[str, Any]:
    """Each tensor's dtype by its key without the `_orig_mod.` prefix."""
    return {key: value.dtype for key, value in strip_prefix(state_dict).items() if hasattr(value, "dtype")}


def load_model(path: str | Path, *, trust_pickle: bool = False) -> LoadedCheckpoint:
    """Read any supported checkpoint (or a safetensors export folder) and build its model; CheckpointError otherwise."""
    path = Path(path)
    if path.is_dir():
        from engine.export.safetensors_io import load_export

        return load_export(path)
    data = read_checkpoint_file(path, trust_pickle=trust_pickle)
    kind = detect_format(data, str(path))
    notes: list[str] = []
    if trust_pickle:
        notes.append("loaded with --trust-pickle: the file's pickled Python objects were run")
    if kind == OURS:
        hyperparameters = data["config"]
        try:
            config = from_dict(hyperparameters, source=f"{path} config").model
        except ConfigError as err:
            raise CheckpointError(f"{path} has an invalid config: {err.message}", hint=err.hint) from err
        payload = data.get("tokenizer")
        if not isinstance(payload, dict):
            raise CheckpointError(f"{path} has no tokenizer description", hint="the checkpoint may be damaged")
        model = build_model(config, data["model"], str(path))
        loaded = LoadedCheckpoint(path, model, config, payload, int(data.get("step", 0)), OURS, hyperparameters, notes,
                                  stored_dtypes(data["model"]))
        # generation and evaluation never attend farther back than training did: past that,
        # distances the model never saw make its text fall apart (benchmarks/long_context.py)
        model.attention_limit = loaded.trained_length
        return loaded
    state_dict = data["model"] if kind == ORIGINAL else data["model_state_dict"]
    if not isinstance(state_dict, dict):
        raise CheckpointError(f"{path}: the model weights are a {type(state_dict).__name__}, expected a dictionary")
    config, inferred = infer_model_config(state_dict, str(path))
    model = build_model(config, state_dict, str(path))
    step = data.get("step", 0)
    return LoadedCheckpoint(path, model, config, {"kind": "gpt2"}, step if isinstance(step, int) else 0,
                            kind, None, notes + inferred, stored_dtypes(state_dict))


@dataclass(frozen=True)
class ImportResult:
    name: str
    run_dir: Path
    checkpoint: Path
    notes: list[str]


def _default_name(path: Path) -> str:
    parent = re.sub(r"[^A-Za-z0-9._-]", "-", path.resolve().parent.name)[:8].strip("-.")
    stem = re.sub(r"[^A-Za-z0-9._-]", "-", path.stem)
    return "-".join(part for part in ("import", parent, stem) if part)[:100]


def hyperparameters_for(loaded: LoadedCheckpoint) -> Hyperparameters:
    """A complete config for an imported model: the speedrun's, with the inferred model shape."""
    if loaded.hyperparameters is not None:
        return from_dict(loaded.hyperparameters, source=str(loaded.path))
    # the speedrun preset: its GPT-2 tokenizer and FineWeb data are what original models trained on
    return dataclasses.replace(preset("speedrun-124m"), model=loaded.config)


def import_checkpoint(path: str | Path, name: str | None = None, *, trust_pickle: bool = False,
                      root: Path | None = None) -> ImportResult:
    """Convert a checkpoint (or a safetensors export folder) into our format in a new run directory of kind
    "import" (finished); every weight keeps the dtype it had in the source."""
    from engine import paths
    from engine.runs.protocol import write_json

    path = Path(path)
    loaded = load_model(path, trust_pickle=trust_pickle)
    hp = hyperparameters_for(loaded)
    root = Path(root) if root is not None else paths.runs_dir()
    explicit = name is not None
    name = paths.validate_name(name if name is not None else _default_name(path))
    run_dir = root / name
    paths.make_dir(root, "runs folder")
    suffix = 1
    while True:
        try:
            run_dir.mkdir()
            break
        except FileExistsError:
            if explicit:
                raise RunError(f"a run named {name!r} already exists", hint="choose another --name") from None
            suffix += 1
            run_dir = root / f"{name}-{suffix}"
    now = time.time()
    payload = {
        "model": loaded.stored_state_dict(), "optimizers": [], "config": to_dict(hp),
        "tokenizer": loaded.tokenizer_payload, "data_position": None, "tokens_seen": 0, "train_time_s": 0.0,
        "kind": "import", "parent": str(path.resolve()),
    }
    meta = {
        "tokens_seen": 0, "config_hash": config_hash(hp), "tokenizer": loaded.tokenizer_payload["kind"],
        "run": run_dir.name, "kind": "import", "parent": str(path.resolve()), "source_format": loaded.source_format,
        "num_params": loaded.model.num_params(), "model": to_dict(hp)["model"], "preset": hp.preset,
        "notes": loaded.notes,
    }
    save_toml(hp, run_dir / "config.toml")
    checkpoint = save_checkpoint(run_dir / "checkpoints", loaded.step, payload, meta)
    write_json(run_dir / "run.json", {
        "name": run_dir.name, "kind": "import", "preset": hp.preset, "created_at": now, "nproc": 1, "nnodes": 1,
        "parent": str(path.resolve()), "source_format": loaded.source_format, "total_steps": loaded.step,
    })
    write_json(run_dir / "status.json", {
        "state": "finished", "step": loaded.step, "total_steps": loaded.step, "started_at": now, "ended_at": now,
        "message": f"imported from {path.name} ({loaded.source_format})",
    })
    log.info("imported %s as run %s", path, run_dir.name)
    return ImportResult(run_dir.name, run_dir, checkpoint, loaded.notes)
