"""The run-folder protocol: which files a run directory holds, their states, and one safe reader.

Every reader of a run folder (the app, the CLI, the supervisor, the trainer) goes through here.
A file that is missing, torn or hand-edited never raises: its fields fall back to defaults one by
one and a `FileProblem` names the file and the field, so one bad file affects only its own run.
No torch import.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.atomic import atomic_write_text

RUN_FILE = "run.json"  # written once at creation: what the run is
STATUS_FILE = "status.json"  # rewritten while it runs: where it is
CONFIG_FILE = "config.toml"
METRICS_FILE = "metrics.jsonl"
LOG_FILE = "train.log"
COMMAND_FILE = "command.json"  # the training command the supervisor starts
STOP_REQUEST = "stop_requested"  # present while a stop was asked for and not yet honoured
CHECKPOINTS_DIR = "checkpoints"

STATES = frozenset({"created", "running", "finished", "failed", "stopped"})
TERMINAL_STATES = frozenset({"finished", "failed", "stopped"})
MAX_RECORD_BYTES = 1 << 20  # a status or run file is a few hundred bytes; more is not ours


@dataclass(frozen=True)
class FileProblem:
    """Why (part of) one file was not used; shown beside the run, never raised."""

    path: Path
    message: str

    def __str__(self) -> str:
        return f"{self.path.name}: {self.message}"


def joined(problems: list[FileProblem], folder: str = "") -> str:
    """The problems on one line for an error message, each file named (inside `folder` when given)."""
    return "; ".join(f"{folder}/{problem}" if folder else str(problem) for problem in problems)


def read_object(path: Path) -> tuple[dict[str, Any], FileProblem | None]:
    """A JSON object file: ({}, None) when absent, ({}, problem) when unreadable or not an object."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_RECORD_BYTES + 1)
    except FileNotFoundError:
        return {}, None
    except OSError as err:
        return {}, FileProblem(path, f"cannot be read ({err.strerror or err})")
    if len(raw) > MAX_RECORD_BYTES:
        return {}, FileProblem(path, f"is larger than {MAX_RECORD_BYTES // 1024} KiB, so it was not read")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        return {}, FileProblem(path, f"is not valid JSON ({str(err).splitlines()[0]})")
    except RecursionError:
        return {}, FileProblem(path, "is nested too deeply to be one of our files")
    if not isinstance(data, dict):
        return {}, FileProblem(path, f"holds a JSON {type(data).__name__}, expected an object")
    return data, None


def read_json(path: Path) -> dict[str, Any]:
    """The object in a JSON file, {} when it is absent or unusable (for writers that merge into it)."""
    return read_object(path)[0]


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    atomic_write_text(path, json.dumps(dict(data), indent=1))


def update_status(run_dir: Path, **fields: Any) -> dict[str, Any]:
    """Merge fields into status.json (atomic replace; last writer wins)."""
    status = read_json(run_dir / STATUS_FILE)
    status.update(fields)
    write_json(run_dir / STATUS_FILE, status)
    return status


# ---------------------------------------------------------------------- field-by-field validation
def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= 10_000


@dataclass(frozen=True)
class Field:
    """One expected key: its check, what it should be (for the notice) and the value used instead."""

    key: str
    check: Callable[[Any], bool]
    expected: str
    default: Any = None
    optional: bool = True  # None (or absent) is accepted as "not set"


def integer(key: str, default: Any = None, *, minimum: int | None = 0, maximum: int | None = None) -> Field:
    return Field(key, lambda v: _is_int(v) and (minimum is None or v >= minimum) and (maximum is None or v <= maximum),
                 "a whole number" + (f" >= {minimum}" if minimum is not None else "")
                 + (f" <= {maximum}" if maximum is not None else ""), default)


def number(key: str, default: Any = None) -> Field:
    return Field(key, _is_number, "a finite number", default)


# a time in seconds since 1970 that a clock can show (time.localtime overflows far beyond it)
LATEST_TIME = 32_503_680_000.0  # the year 3000
PID_MAX = 2**31 - 1  # what os.kill accepts


def timestamp(key: str, default: Any = None) -> Field:
    return Field(key, lambda v: _is_number(v) and 0 <= v <= LATEST_TIME, "a time in seconds since 1970", default)


def text(key: str, default: Any = None) -> Field:
    return Field(key, _is_text, "a string", default)


def choice(key: str, options: frozenset[str], default: str) -> Field:
    return Field(key, lambda v: v in options, "one of " + ", ".join(sorted(options)), default)


def take_fields(data: Mapping[str, Any], fields: tuple[Field, ...], path: Path,
                problems: list[FileProblem]) -> dict[str, Any]:
    """The checked value of each field (its default when absent or wrong); a problem per wrong one."""
    values = {}
    for spec in fields:
        value = data.get(spec.key)
        if value is None and spec.optional:
            values[spec.key] = spec.default
        elif spec.check(value):
            values[spec.key] = value
        else:
            problems.append(FileProblem(path, f"{spec.key}: expected {spec.expected}, got {_short(value)}"))
            values[spec.key] = spec.default
    return values


def _short(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 40 else shown[:37] + "..."


# ---------------------------------------------------------------------- typed records
RUN_KINDS = frozenset({"pretrain", "finetune", "import"})

_RUN_FIELDS = (
    choice("kind", RUN_KINDS, "pretrain"), text("preset", ""), timestamp("created_at", 0.0),
    integer("nproc", 1, minimum=1), integer("nnodes", 1, minimum=1), integer("node_rank", 0),
    text("rdzv_endpoint"), text("parent"), integer("total_steps", 0), text("device", ""),
)
_STATUS_FIELDS = (
    choice("state", STATES, "created"), integer("step", 0), integer("total_steps", 0),
    integer("pid", None, minimum=1, maximum=PID_MAX), timestamp("pid_started_at"), timestamp("started_at"),
    timestamp("ended_at"), integer("exit_code", None, minimum=None),
    text("message", ""), number("progress"), number("time_budget_s", 0.0), number("train_time_s"),
)


@dataclass(frozen=True)
class RunMeta:
    """run.json: what the run is (written once, at creation)."""

    kind: str = "pretrain"
    preset: str = ""
    created_at: float = 0.0
    nproc: int = 1
    nnodes: int = 1
    node_rank: int = 0
    rdzv_endpoint: str | None = None
    parent: str | None = None
    total_steps: int = 0
    device: str = ""


@dataclass(frozen=True)
class RunStatus:
    """status.json: where the run is; `progress` is the fraction of whichever bound (steps, time) ends it."""

    state: str = "created"
    step: int = 0
    total_steps: int = 0
    pid: int | None = None
    pid_started_at: float | None = None  # the process's creation time: tells a reused pid apart
    started_at: float | None = None
    ended_at: float | None = None
    exit_code: int | None = None
    message: str = ""
    progress: float | None = None
    time_budget_s: float = 0.0
    train_time_s: float | None = None


@dataclass(frozen=True)
class RunFiles:
    """A run folder's records as read now, with every problem met on the way."""

    meta: RunMeta
    status: RunStatus
    problems: tuple[FileProblem, ...] = field(default=())


def read_run_files(run_dir: Path) -> RunFiles:
    problems: list[FileProblem] = []
    meta_path, status_path = run_dir / RUN_FILE, run_dir / STATUS_FILE
    raw_meta, problem = read_object(meta_path)
    problems += [problem] if problem else []
    meta = RunMeta(**take_fields(raw_meta, _RUN_FIELDS, meta_path, problems))
    raw_status, problem = read_object(status_path)
    problems += [problem] if problem else []
    status = RunStatus(**take_fields(raw_status, _STATUS_FIELDS, status_path, problems))
    return RunFiles(meta, status, tuple(problems))


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and (path / RUN_FILE).exists()


def read_sidecar(pt_path: Path) -> tuple[dict[str, Any] | None, FileProblem | None]:
    """A checkpoint's `.json` sidecar; None with a problem when it cannot be used (no step)."""
    path = pt_path.with_suffix(".json")
    data, problem = read_object(path)
    if problem is not None:
        return None, problem
    if not data:
        return None, None  # not written yet: the weights are renamed into place before their sidecar
    if not _is_int(data.get("step")) or data["step"] < 0:
        return None, FileProblem(path, f"step: expected a whole number >= 0, got {_short(data.get('step'))}")
    return data, None


# sidecar kinds of checkpoints whose model was trained to answer (the rest continue text)
FINETUNED_KINDS = frozenset({"finetune"})
# the source_format of an imported fine-tune of the original (its finetune.py output); stored, so its
# older wording stays
ORIGINAL_FINETUNE_FORMAT = "seed-finetune"


@dataclass(frozen=True)
class CheckpointEntry:
    """One complete checkpoint as its sidecar describes it (never its weights); `run` names its run folder."""

    path: Path
    step: int
    meta: Mapping[str, Any]
    run: str = ""

    @property
    def kind(self) -> str:
        kind = self.meta.get("kind")
        return kind if isinstance(kind, str) and kind else "pretrain"

    @property
    def label(self) -> str:
        return f"{self.run or self.path.parent.name} @ {self.step}"

    @property
    def finetuned(self) -> bool:
        return self.kind in FINETUNED_KINDS or self.meta.get("source_format") == ORIGINAL_FINETUNE_FORMAT

    def number(self, key: str) -> float | None:
        value = self.meta.get(key)
        return float(value) if _is_number(value) else None

    @property
    def val_loss(self) -> float | None:
        return self.number("val_loss")


def list_checkpoint_files(directory: Path, run: str = "") -> tuple[list[CheckpointEntry], list[FileProblem]]:
    """Complete checkpoints (a .pt with a usable sidecar) in step order, and the sidecars that were not usable."""
    entries, problems = [], []
    try:
        candidates = sorted(Path(directory).glob("step_*.pt"))
    except OSError as err:
        return [], [FileProblem(Path(directory), f"cannot be listed ({err.strerror or err})")]
    for pt_path in candidates:
        meta, problem = read_sidecar(pt_path)
        if problem is not None:
            problems.append(problem)
        if meta is not None:
            entries.append(CheckpointEntry(pt_path, meta["step"], meta, run))
    return sorted(entries, key=lambda entry: entry.step), problems
