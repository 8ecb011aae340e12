"""`--format original`: a `state_step*.pt` the original's own model.py loads with `load_state_dict`.

The original (justuskarlsson/nanogpt model.py, the speedrun's GPT) hard-codes much of the shape: 128-dim
heads whose width equals the model's, three value embeddings, no attention in layer 7, twelve
layers with the window pattern L S S S L S S L S S S L, blocks of 128 tokens and documents separated
by GPT-2's token 50256. A model that differs in any of these is refused, with every reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.checkpoint import ORIGINAL_PREFIX
from engine.config import ModelConfig
from engine.errors import ConfigError
from engine.export import ExportResult
from engine.export.folder import staged_folder

ORIGINAL_LAYERS = 12
ORIGINAL_HEAD_DIM = 128
ORIGINAL_VALUE_EMBEDS = 3
ORIGINAL_NO_ATTENTION = (7,)
ORIGINAL_WINDOW_PATTERN = "LSSSLSSLSSSL"
ORIGINAL_BLOCK_SIZE = 128
ORIGINAL_BOS_ID = 50256


def original_refusals(config: ModelConfig) -> list[str]:
    """Why the original's model.py cannot hold a model of this shape (empty: it can)."""
    reasons = []
    if config.num_layers != ORIGINAL_LAYERS:
        reasons.append(f"it builds {ORIGINAL_LAYERS} layers (its window list is fixed); this model has {config.num_layers}")
    if config.head_dim != ORIGINAL_HEAD_DIM:
        reasons.append(f"its heads are {ORIGINAL_HEAD_DIM}-dimensional; this model's are {config.head_dim}")
    if config.num_heads * config.head_dim != config.model_dim:
        reasons.append(f"its value embeddings have the model's width, so heads x head_dim must equal model_dim "
                       f"({config.num_heads} x {config.head_dim} != {config.model_dim})")
    if config.num_value_embeds != ORIGINAL_VALUE_EMBEDS:
        reasons.append(f"it has {ORIGINAL_VALUE_EMBEDS} value embeddings; this model has {config.num_value_embeds}")
    if tuple(config.no_attention_layers) != ORIGINAL_NO_ATTENTION:
        reasons.append(f"only layer 7 has no attention; this model: {list(config.no_attention_layers) or 'none'}")
    if config.window_pattern != ORIGINAL_WINDOW_PATTERN:
        reasons.append(f"its windows are {ORIGINAL_WINDOW_PATTERN}; this model's are {config.window_pattern}")
    if config.attn_block_size != ORIGINAL_BLOCK_SIZE:
        reasons.append(f"its attention blocks are {ORIGINAL_BLOCK_SIZE} tokens; this model's are {config.attn_block_size}")
    if config.bos_id != ORIGINAL_BOS_ID or config.vocab_size <= ORIGINAL_BOS_ID:
        reasons.append(f"it separates documents at GPT-2's token {ORIGINAL_BOS_ID}; this model's separator is "
                       f"{config.bos_id} (vocabulary {config.vocab_size})")
    return reasons


def original_state_dict(loaded: Any) -> dict[str, Any]:
    """Our weights under the compiled model's keys (`_orig_mod.` + the original's names), in their stored dtypes."""
    return {ORIGINAL_PREFIX + key: tensor.contiguous() for key, tensor in loaded.stored_state_dict().items()}


def write_original(loaded: Any, out_dir: Path) -> ExportResult:
    """out_dir/state_stepNNNNNN.pt = {"step", "code", "model", "optimizers"} as the original's pretraining.py saves it."""
    import torch

    reasons = original_refusals(loaded.config)
    if reasons:
        raise ConfigError("the original modded-nanogpt model.py cannot express this model: " + "; ".join(reasons),
                          hint="export it with --format safetensors or --format hf instead")
    name = f"state_step{loaded.step:06d}.pt"
    payload = {
        "step": loaded.step,
        # the original stores its training script's source here; there is none for a model trained elsewhere
        "code": f"# exported by nanogpt-tui from {loaded.path} ({loaded.source_format}, step {loaded.step})\n",
        "model": original_state_dict(loaded),
        # our optimiser state does not fit the original's optimisers, so none is carried over
        "optimizers": [],
    }
    notes = [f"the original's sliding window is chosen by its caller: this model was trained up to "
             f"{loaded.config.max_window_tokens} tokens (get_window_size_blocks at the end of training)"]
    with staged_folder(out_dir) as staging:
        with open(staging / name, "wb") as handle:
            torch.save(payload, handle)
        files = [name]
    return ExportResult(Path(out_dir).expanduser().absolute(), files, notes)
