"""`--format original`: a `state_step*.pt` the seed's own model.py loads with `load_state_dict`.

The seed (justuskarlsson/nanogpt model.py, the speedrun's GPT) hard-codes much of the shape: 128-dim
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

SEED_LAYERS = 12
SEED_HEAD_DIM = 128
SEED_VALUE_EMBEDS = 3
SEED_NO_ATTENTION = (7,)
SEED_WINDOW_PATTERN = "LSSSLSSLSSSL"
SEED_BLOCK_SIZE = 128
SEED_BOS_ID = 50256


def original_refusals(config: ModelConfig) -> list[str]:
    """Why the seed's model.py cannot hold a model of this shape (empty: it can)."""
    reasons = []
    if config.num_layers != SEED_LAYERS:
        reasons.append(f"it builds {SEED_LAYERS} layers (its window list is fixed); this model has {config.num_layers}")
    if config.head_dim != SEED_HEAD_DIM:
        reasons.append(f"its heads are {SEED_HEAD_DIM}-dimensional; this model's are {config.head_dim}")
    if config.num_heads * config.head_dim != config.model_dim:
        reasons.append(f"its value embeddings have the model's width, so heads x head_dim must equal model_dim "
                       f"({config.num_heads} x {config.head_dim} != {config.model_dim})")
    if config.num_value_embeds != SEED_VALUE_EMBEDS:
        reasons.append(f"it has {SEED_VALUE_EMBEDS} value embeddings; this model has {config.num_value_embeds}")
    if tuple(config.no_attention_layers) != SEED_NO_ATTENTION:
        reasons.append(f"only layer 7 has no attention; this model: {list(config.no_attention_layers) or 'none'}")
    if config.window_pattern != SEED_WINDOW_PATTERN:
        reasons.append(f"its windows are {SEED_WINDOW_PATTERN}; this model's are {config.window_pattern}")
    if config.attn_block_size != SEED_BLOCK_SIZE:
        reasons.append(f"its attention blocks are {SEED_BLOCK_SIZE} tokens; this model's are {config.attn_block_size}")
    if config.bos_id != SEED_BOS_ID or config.vocab_size <= SEED_BOS_ID:
        reasons.append(f"it separates documents at GPT-2's token {SEED_BOS_ID}; this model's separator is "
                       f"{config.bos_id} (vocabulary {config.vocab_size})")
    return reasons


def original_state_dict(loaded: Any) -> dict[str, Any]:
    """Our weights under the compiled model's keys (`_orig_mod.` + the seed's names), in their stored dtypes."""
    return {ORIGINAL_PREFIX + key: tensor.contiguous() for key, tensor in loaded.stored_state_dict().items()}


def write_original(loaded: Any, out_dir: Path) -> ExportResult:
    """out_dir/state_stepNNNNNN.pt = {"step", "code", "model", "optimizers"} as the seed's pretraining.py saves it."""
    import torch

    reasons = original_refusals(loaded.config)
    if reasons:
        raise ConfigError("the original modded-nanogpt model.py cannot express this model: " + "; ".join(reasons),
                          hint="export it with --format safetensors or --format hf instead")
    name = f"state_step{loaded.step:06d}.pt"
    payload = {
        "step": loaded.step,
        # the seed stores its training script's source here; there is none for a model trained elsewhere
        "code": f"# exported by nanogpt-tui from {loaded.path} ({loaded.source_format}, step {loaded.step})\n",
        "model": original_state_dict(loaded),
        # our optimiser state does not fit the seed's optimisers, so none is carried over
        "optimizers": [],
    }
    notes = [f"the seed's sliding window is chosen by its caller: this model was trained up to "
             f"{loaded.config.max_window_tokens} tokens (get_window_size_blocks at the end of training)"]
    with staged_folder(out_dir) as staging:
        with open(staging / name, "wb") as handle:
            torch.save(payload, handle)
        files = [name]
    return ExportResult(Path(out_dir).expanduser().absolute(), files, notes)
