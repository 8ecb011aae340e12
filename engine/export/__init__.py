"""A model out of nanogpt-tui: safetensors, Hugging Face transformers (with its own modeling code), the original's .pt.

`export_checkpoint(path, out_dir, fmt)` is the one entry point the CLI and the app call.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.errors import ConfigError

FORMATS = ("safetensors", "hf", "original")


@dataclass(frozen=True)
class ExportResult:
    out_dir: Path
    files: list[str]  # names of the files written, inside out_dir
    notes: list[str]


def export_checkpoint(path: str | Path, out_dir: str | Path, fmt: str = "safetensors", *,
                      trust_pickle: bool = False) -> ExportResult:
    """Write the checkpoint at `path` to `out_dir` (which must not exist yet, or be empty) in format `fmt`."""
    from engine.importer import load_model

    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}", hint=f"choose one of: {', '.join(FORMATS)}")
    loaded = load_model(path, trust_pickle=trust_pickle)
    if fmt == "original":
        from engine.export.original import write_original

        return write_original(loaded, Path(out_dir))
    from engine.export.safetensors_io import write_export

    return write_export(loaded, Path(out_dir), hf=fmt == "hf")
