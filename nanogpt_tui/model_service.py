"""What the checkpoints, evaluate and chat screens need from the engine, and its local implementation.

The local implementation is a thin adapter over engine.runs.Workspace (the same object the CLI
uses): listing, resolving, deleting and planning are decided there. Loading a model, evaluating
and generating import torch inside the call, so a worker pays for it and the app's first frame
never does.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from engine.errors import DataError

if TYPE_CHECKING:
    from engine.runs.protocol import CheckpointEntry
    from engine.sampling_params import SamplingParams
    from engine.inference.chat import ChatSession
    from engine.config import FinetuneConfig
    from engine.data.conversations import ConversationReport
    from engine.inference.evaluate import EvalReport
    from engine.inference.generate import Generator
    from engine.importer import ImportResult
    from engine.runs import RunInfo, Workspace
    from engine.serve.processes import ServerInfo, ServerManager


@dataclass
class LoadedModel:
    """A model ready to generate and evaluate, with what the screens say about it."""

    entry_path: Path
    label: str
    generator: Generator
    hyperparameters: dict[str, Any] | None
    finetuned: bool
    notes: list[str] = field(default_factory=list)


class EvaluationCancelled(Exception):
    """Raised from the progress callback to leave an evaluation the user cancelled."""


class ModelEngine(Protocol):
    """The part of the engine facade that serves checkpoints; tests pass fakes of single methods."""

    def list_checkpoints(self) -> list[CheckpointEntry]: ...
    def checkpoint_problems(self) -> list[str]: ...
    def newest_checkpoint(self) -> CheckpointEntry | None: ...
    def checkpoint_config(self, entry: CheckpointEntry) -> str: ...
    def delete_checkpoint(self, entry: CheckpointEntry) -> None: ...
    def import_checkpoint(self, path: str, name: str | None, *, trust_pickle: bool = False) -> ImportResult: ...
    def check_conversations(self, path: str) -> ConversationReport: ...
    def finetune_defaults(self, entry: CheckpointEntry) -> FinetuneConfig: ...
    def launch_finetune(self, entry: CheckpointEntry, data: str, name: str | None,
                        overrides: Sequence[str]) -> RunInfo: ...
    def load_model(self, entry: CheckpointEntry) -> LoadedModel: ...
    def chat_session(self, model: LoadedModel, template: str, system: str) -> ChatSession: ...
    def evaluate(self, model: LoadedModel, data: str | None, max_tokens: int,
                 progress: Callable[[float], None], cancel: threading.Event) -> EvalReport: ...
    def save_conversation(self, messages: Sequence[Mapping[str, str]], path: str | None,
                          overwrite: bool = False) -> Path: ...
    def list_servers(self) -> list[ServerInfo]: ...
    def start_server(self, entry: CheckpointEntry) -> ServerInfo: ...
    def stop_server(self, server: ServerInfo) -> None: ...


def sampling_params(values: SamplingParams, *, seed_offset: int = 0) -> SamplingParams:
    """The sliders' values as the generator takes them.

    top-p 0 on the slider means "only the most likely token", the limit of nucleus sampling;
    the engine takes the smallest positive value for it.
    """
    return dataclasses.replace(values, top_p=max(values.top_p, 1e-6), seed=values.seed + seed_offset)


def conversation_document(messages: Sequence[Mapping[str, str]]) -> dict[str, Any]:
    """The fine-tuning JSON for one conversation; empty turns (a reply stopped before its first token) are left out."""
    kept = [{"role": m["role"], "content": m["content"]} for m in messages if m["content"].strip()]
    if not any(m["role"] == "assistant" for m in kept):
        raise DataError("the conversation has no reply yet, so there is nothing to train on",
                        hint="send a message and let the model answer first")
    return {"conversations": [{"messages": kept}]}


class ModelCache:
    """Loaded models by checkpoint file (and its modification time), the few most recent kept.

    Loads run under one lock, so two screens asking for one checkpoint at once get one copy.
    """

    def __init__(self, keep: int = 2) -> None:
        self.keep = keep
        self._lock = threading.Lock()
        self._models: dict[tuple[Path, float], LoadedModel] = {}

    def get(self, entry: CheckpointEntry, load: Callable[[CheckpointEntry], LoadedModel]) -> LoadedModel:
        try:
            key = (entry.path.resolve(), entry.path.stat().st_mtime)
        except OSError:
            return load(entry)  # the load reports the missing file
        with self._lock:
            model = self._models.pop(key, None)
            if model is None:
                model = load(entry)
            self._models[key] = model  # most recent last
            while len(self._models) > self.keep:
                del self._models[next(iter(self._models))]
            return model


class LocalModels:
    """ModelEngine over `self.workspace` (mixed into the app's LocalEngine)."""

    root: Path
    workspace: Workspace
    model_cache: ModelCache

    def list_checkpoints(self) -> list[CheckpointEntry]:
        """Every complete checkpoint of every run, newest run first, steps in order; sidecars only."""
        return self.workspace.checkpoints.list()

    def checkpoint_problems(self) -> list[str]:
        """The sidecars the last listing could not use, as "RUN/checkpoints/FILE: why"."""
        return [f"{problem.path.parent.parent.name}/{problem.path.parent.name}/{problem}"
                for problem in self.workspace.checkpoints.problems]

    def newest_checkpoint(self) -> CheckpointEntry | None:
        """The checkpoint `nanogpt-tui chat` opens without an argument."""
        return self.workspace.checkpoints.newest_entry()

    def checkpoint_config(self, entry: CheckpointEntry) -> str:
        """The run's config.toml as text, or the sidecar's model section when the run has none."""
        config = entry.path.parent.parent / "config.toml"
        try:
            return config.read_text(encoding="utf-8")
        except OSError:
            model = entry.meta.get("model")
            return "[model]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in (model or {}).items())

    def delete_checkpoint(self, entry: CheckpointEntry) -> None:
        self.workspace.delete_checkpoint(entry)

    def import_checkpoint(self, path: str, name: str | None, *, trust_pickle: bool = False) -> ImportResult:
        from engine.importer import import_checkpoint

        return import_checkpoint(Path(path).expanduser(), name or None, trust_pickle=trust_pickle,
                                 root=self.workspace.runs_root)

    def check_conversations(self, path: str) -> ConversationReport:
        from engine.data.conversations import read_conversations

        return read_conversations(path)

    def finetune_defaults(self, entry: CheckpointEntry) -> FinetuneConfig:
        return self.workspace.finetune_defaults(entry.path)

    def launch_finetune(self, entry: CheckpointEntry, data: str, name: str | None,
                        overrides: Sequence[str]) -> RunInfo:
        """What `nanogpt-tui finetune --from CHECKPOINT --data FILE --detach` does: the same plan, the same launch."""
        plan = self.workspace.plan_finetune(entry.path, data, overrides, name=name)
        return self.workspace.launch_finetune(plan)

    def load_model(self, entry: CheckpointEntry) -> LoadedModel:
        """The checkpoint's model, loaded once: Chat and Evaluate on one checkpoint share it (and its lock)."""
        return self.model_cache.get(entry, self._load_model)

    @staticmethod
    def _load_model(entry: CheckpointEntry) -> LoadedModel:
        from engine.importer import load_model
        from engine.inference.generate import Generator
        from engine.runs.protocol import ORIGINAL_FINETUNE_FORMAT

        loaded = load_model(entry.path)
        generator = Generator.from_checkpoint(loaded)
        finetuned = entry.finetuned or loaded.source_format == ORIGINAL_FINETUNE_FORMAT
        return LoadedModel(entry.path, entry.label, generator, loaded.hyperparameters, finetuned, list(loaded.notes))

    def chat_session(self, model: LoadedModel, template: str, system: str) -> ChatSession:
        from engine.inference.chat import ChatSession

        return ChatSession(model.generator, template=template, system=system)

    def evaluate(self, model: LoadedModel, data: str | None, max_tokens: int,
                 progress: Callable[[float], None], cancel: threading.Event) -> EvalReport:
        """Val loss and bpb; the progress callback raises EvaluationCancelled once `cancel` is set."""
        from engine.inference.evaluate import default_eval_seq_len, eval_data, evaluate_model

        generator = model.generator

        def report(fraction: float) -> None:
            if cancel.is_set():
                raise EvaluationCancelled
            progress(fraction)

        tokens = eval_data(data, generator.tokenizer, model.hyperparameters)
        seq_len = default_eval_seq_len(model.hyperparameters, generator.max_context)
        return evaluate_model(generator.model, generator.tokenizer, tokens, seq_len=seq_len, max_tokens=max_tokens,
                              device=generator.device, progress=report)

    def save_conversation(self, messages: Sequence[Mapping[str, str]], path: str | None,
                          overwrite: bool = False) -> Path:
        """Write the conversation as fine-tuning JSON (the default folder is <data dir>/conversations).

        An existing file is replaced only with overwrite=True (the screen asks first); a default name
        that is taken gets a number instead.
        """
        from engine.atomic import atomic_write_text

        document = conversation_document(messages)
        if path:
            target = Path(path).expanduser()
            if target.exists() and not overwrite:
                raise DataError(f"{target} already exists, so the conversation was not saved",
                                hint="give another path, or confirm replacing the file")
        else:
            stem = self.workspace.conversations_dir / f"chat-{time.strftime('%Y%m%d-%H%M%S')}"
            target = next(candidate for n in itertools.count(1)
                          if not (candidate := Path(f"{stem}{'' if n == 1 else f'-{n}'}.json")).exists())
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(target, json.dumps(document, indent=1, ensure_ascii=False) + "\n")
        except OSError as err:
            raise DataError(f"could not write {target}: {err.strerror or err}") from err
        return target

    @property
    def servers(self) -> ServerManager:
        from engine.serve.processes import ServerManager

        return ServerManager(self.workspace.servers_dir)

    def list_servers(self) -> list[ServerInfo]:
        return self.servers.list()

    def start_server(self, entry: CheckpointEntry) -> ServerInfo:
        """What `nanogpt-tui serve CHECKPOINT --port 0` does, detached; returns once it listens."""
        from engine.serve.server import require_serve_extra

        require_serve_extra()
        manager = self.servers
        # one server per checkpoint: a second Serve (a stale list, a double key press) finds the first
        running = next((server for server in manager.list() if server.checkpoint_path == entry.path), None)
        return manager.wait_ready(running.name if running is not None else manager.start(entry.path).name)

    def stop_server(self, server: ServerInfo) -> None:
        self.servers.stop(server.name)
