"""Export folders: `model.safetensors` + `config.json` + tokenizer files, optionally Hugging Face's modeling code.

config.json is a transformers configuration (model_type "nanogpt_tui") that also carries nanogpt-tui's
own section (`nanogpt_tui`: the full config, step, tokenizer kind), so one file serves `transformers`
and `nanogpt-tui import DIR`. Nothing in the folder is a pickle: weights are safetensors, the rest JSON
and Python source.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from engine.atomic import atomic_write_text
from engine.config import ModelConfig, from_dict, to_dict
from engine.errors import CheckpointError, ConfigError, DataError
from engine.export import ExportResult
from engine.export.folder import staged_folder

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"
EXPORT_FORMAT = 1
SAFETENSORS = "safetensors"
# the Hugging Face files shipped as package data beside this module
HF_TEMPLATE_FILES = ("configuration_nanogpt.py", "modeling_nanogpt.py")
HF_AUTO_MAP = {"AutoConfig": "configuration_nanogpt.NanoGPTConfig",
               "AutoModelForCausalLM": "modeling_nanogpt.NanoGPTForCausalLM"}


def hf_config(config: ModelConfig, output_vocab_size: int, context_length: int,
              attention_limit: int | None) -> dict[str, Any]:
    """The transformers configuration: the model's shape under NanoGPTConfig's names."""
    return {
        "architectures": ["NanoGPTForCausalLM"], "model_type": "nanogpt_tui", "vocab_size": config.vocab_size,
        "output_vocab_size": output_vocab_size, "num_layers": config.num_layers, "num_heads": config.num_heads,
        "head_dim": config.head_dim, "model_dim": config.model_dim, "num_value_embeds": config.num_value_embeds,
        "no_attention_layers": list(config.no_attention_layers), "window_pattern": config.window_pattern,
        "max_window_tokens": config.max_window_tokens, "attn_block_size": config.attn_block_size,
        "bos_id": config.bos_id, "bos_token_id": config.bos_id, "eos_token_id": config.bos_id,
        "attention_limit": attention_limit,
        "max_position_embeddings": context_length, "tie_word_embeddings": False,
        # the weights are fp32 apart from (maybe) bf16 embeddings: load in fp32, as nanogpt-tui computes on CPU
        "dtype": "float32", "torch_dtype": "float32",
    }


def hf_tokenizer_json(json_text: str, bos: str, bos_id: int) -> str:
    """Our BPE JSON with a post-processor that puts BOS first, as every prompt of ours starts."""
    from tokenizers import Tokenizer, processors

    tokenizer = Tokenizer.from_str(json_text)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, bos_id)])
    return tokenizer.to_str()


def plain_tokenizer_json(exported: str) -> str:
    """Undo hf_tokenizer_json: the exact JSON the model was trained with (so its identifier is unchanged)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(exported)
    tokenizer.post_processor = None
    return tokenizer.to_str()


@dataclass(frozen=True)
class TokenizerFiles:
    """What the export writes for the tokenizer: tokenizer.json text (None: none) and its special tokens."""

    json_text: str | None
    bos: str
    pad: str
    bos_id: int
    vocab_size: int | None  # None when the tokenizer could not be had (GPT-2 offline)
    note: str = ""


def tokenizer_files(payload: dict[str, str], hf: bool) -> TokenizerFiles:
    """Our BPE's JSON as trained (hf: with BOS put first), or GPT-2's converted from tiktoken for hf."""
    from engine.data.tokenizer import BOS, GPT2_EOT, PAD, gpt2_tokenizer, tokenizer_from_payload

    if payload["kind"] == "bpe":
        tokenizer = tokenizer_from_payload(payload)
        text = payload["json"]
        return TokenizerFiles(hf_tokenizer_json(text, BOS, tokenizer.bos_id) if hf else text, BOS, PAD,
                              tokenizer.bos_id, tokenizer.vocab_size)
    if not hf:  # the safetensors format names GPT-2; nanogpt-tui loads it with tiktoken
        return TokenizerFiles(None, GPT2_EOT, GPT2_EOT, 0, None)
    try:
        gpt2 = gpt2_tokenizer()
    except DataError as err:
        return TokenizerFiles(None, GPT2_EOT, GPT2_EOT, 0, None,
                              f"the GPT-2 tokenizer is not bundled ({err.message}): use "
                              f"AutoTokenizer.from_pretrained('gpt2'), or export again once tiktoken has its files")
    from engine.export.tiktoken_json import tokenizer_json

    return TokenizerFiles(tokenizer_json(gpt2._encoding, GPT2_EOT), GPT2_EOT, GPT2_EOT, gpt2.bos_id, gpt2.vocab_size)


def write_export(loaded: Any, out_dir: Path, *, hf: bool) -> ExportResult:
    """Write `loaded` (an engine.importer.LoadedCheckpoint) as an export folder; `hf` adds transformers' files."""
    from safetensors.torch import save as safetensors_bytes

    from engine.importer import hyperparameters_for

    tokenizer = tokenizer_files(loaded.tokenizer_payload, hf)
    vocab = min(tokenizer.vocab_size or loaded.config.vocab_size, loaded.config.vocab_size)
    config = hf_config(loaded.config, vocab, loaded.context_length, loaded.model.attention_limit)
    config["nanogpt_tui"] = {
        "format": EXPORT_FORMAT, "hyperparameters": to_dict(hyperparameters_for(loaded)), "step": loaded.step,
        "source_format": loaded.source_format, "tokenizer": loaded.tokenizer_payload["kind"],
    }
    if hf:
        config["auto_map"] = HF_AUTO_MAP
    tensors = {key: tensor.contiguous() for key, tensor in loaded.stored_state_dict().items()}
    with staged_folder(out_dir) as staging:
        (staging / WEIGHTS_FILE).write_bytes(safetensors_bytes(tensors, metadata={"format": "pt"}))
        atomic_write_text(staging / CONFIG_FILE, json.dumps(config, indent=1) + "\n")
        if tokenizer.json_text is not None:
            atomic_write_text(staging / TOKENIZER_FILE, tokenizer.json_text)
        if hf:
            _write_hf_files(staging, tokenizer, loaded.config.bos_id, loaded.context_length)
        files = sorted(child.name for child in staging.iterdir())
    return ExportResult(Path(out_dir).expanduser().absolute(), files, [tokenizer.note] if tokenizer.note else [])


def _write_hf_files(staging: Path, tokenizer: TokenizerFiles, bos_id: int, context_length: int) -> None:
    template = resources.files("engine.export") / "hf_template"
    for name in HF_TEMPLATE_FILES:
        with resources.as_file(template / name) as source:
            shutil.copyfile(source, staging / name)
    generation = {"bos_token_id": bos_id, "eos_token_id": bos_id, "use_cache": False}
    atomic_write_text(staging / "generation_config.json", json.dumps(generation, indent=1) + "\n")
    if tokenizer.json_text is None:
        return
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": tokenizer.bos, "eos_token": tokenizer.bos,
        "pad_token": tokenizer.pad, "model_max_length": context_length, "padding_side": "left",
        "clean_up_tokenization_spaces": False, "model_input_names": ["input_ids", "attention_mask"],
    }
    atomic_write_text(staging / "tokenizer_config.json", json.dumps(tokenizer_config, indent=1) + "\n")


def is_export_folder(path: Path) -> bool:
    return (path / WEIGHTS_FILE).is_file() and (path / CONFIG_FILE).is_file()


def load_export(folder: Path) -> Any:
    """A LoadedCheckpoint from an export folder: weights from safetensors (no pickle), config and tokenizer from JSON."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from engine.importer import LoadedCheckpoint, build_model, stored_dtypes

    folder = Path(folder)
    if not is_export_folder(folder):
        raise CheckpointError(f"{folder} is a folder without {WEIGHTS_FILE} and {CONFIG_FILE}",
                              hint="give a checkpoint file, a run name, or a folder written by nanogpt-tui export")
    try:
        config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"cannot read {folder / CONFIG_FILE}: {err}") from err
    ours = config.get("nanogpt_tui") if isinstance(config, dict) else None
    if not isinstance(ours, dict) or not isinstance(ours.get("hyperparameters"), dict):
        raise CheckpointError(f"{folder / CONFIG_FILE} was not written by nanogpt-tui export (no nanogpt_tui section)",
                              hint="only folders exported by nanogpt-tui can be imported")
    try:
        hp = from_dict(ours["hyperparameters"], source=f"{folder / CONFIG_FILE}")
    except ConfigError as err:
        raise CheckpointError(f"{folder / CONFIG_FILE} has an invalid config: {err.message}", hint=err.hint) from err
    try:
        state_dict = load_file(folder / WEIGHTS_FILE)
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{folder / WEIGHTS_FILE} is not a readable safetensors file: {err}",
                              hint="export the model again") from err
    payload = _tokenizer_payload(folder, ours.get("tokenizer"))
    model = build_model(hp.model, state_dict, str(folder / WEIGHTS_FILE))
    step = ours.get("step")
    loaded = LoadedCheckpoint(folder, model, hp.model, payload, step if isinstance(step, int) else 0, SAFETENSORS,
                              to_dict(hp), [], stored_dtypes(state_dict))
    model.attention_limit = loaded.trained_length  # as load_model does for our own checkpoints
    return loaded


def _tokenizer_payload(folder: Path, kind: Any) -> dict[str, str]:
    if kind == "gpt2":
        return {"kind": "gpt2"}
    if kind != "bpe":
        raise CheckpointError(f"{folder / CONFIG_FILE} names tokenizer {kind!r}", hint="expected 'bpe' or 'gpt2'")
    try:
        text = (folder / TOKENIZER_FILE).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise CheckpointError(f"cannot read {folder / TOKENIZER_FILE}: {err}",
                              hint="an export of a BPE model holds its tokenizer.json") from err
    try:
        return {"kind": "bpe", "json": plain_tokenizer_json(text)}
    except Exception as err:  # tokenizers raises a bare Exception for malformed JSON
        raise DataError(f"{folder / TOKENIZER_FILE} is not a tokenizer: {err}") from err
