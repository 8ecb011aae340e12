"""Hyperparameters as typed, frozen dataclasses; presets; TOML load/save with strict validation.

`schema.py` the sections and the fixed choices (Literal types), `presets.py` the presets,
`validation.py` every check, `convert.py` dicts, TOML, `--set` overrides and run-creation
adjustments. Everything is importable from `engine.config`.
"""

from __future__ import annotations

from engine.config.convert import (GPT2_EOT_ID, GPT2_VOCAB_SIZE, align_vocab, apply_overrides, config_hash, dumps_toml,
                                   from_dict, load_toml, parse_override, resolve_paths, save_toml, to_dict)
from engine.config.presets import DEFAULT_PRESET, PRESETS, preset
from engine.config.schema import (SECTIONS, ChatTemplate, CompileMode, DataConfig, DeviceName, DtypeName,
                                  FinetuneConfig, FinetuneOptimizer, Hyperparameters, ModelConfig, OptimConfig,
                                  Overflow, RunConfig, Sampling, TemplateChoice, TokenizerKind, TrainConfig,
                                  next_multiple_of_n)
from engine.config.validation import check_choice, choice_fields, choices, validate

__all__ = [
    "TokenizerKind", "Sampling", "DeviceName", "DtypeName", "CompileMode", "FinetuneOptimizer", "Overflow",
    "ChatTemplate", "TemplateChoice", "next_multiple_of_n", "ModelConfig", "DataConfig", "OptimConfig",
    "TrainConfig", "RunConfig", "FinetuneConfig", "Hyperparameters", "SECTIONS", "PRESETS", "DEFAULT_PRESET",
    "preset", "choice_fields", "choices", "check_choice", "to_dict", "from_dict", "validate", "load_toml",
    "dumps_toml", "save_toml", "parse_override", "apply_overrides", "GPT2_VOCAB_SIZE", "GPT2_EOT_ID",
    "resolve_paths", "align_vocab", "config_hash",
]
