"""RunManager: run directories on disk, detached training processes, and their state.

Everything here reads files, so a second viewer (another TUI, the CLI) sees the same state and a
run outlives the process that launched it. No torch import at module level.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine import paths
from engine.atomic import atomic_write_text
from engine.config import Hyperparameters, align_vocab, load_toml, resolve_paths, save_toml, validate
from engine.errors import DeviceError, RunError
from engine.metrics import parse_line

TERMINAL_STATES = frozenset({"finished", "failed", "stopped"})
STOP_REQUEST = "stop_requested"
ENTRY_MODULES = {"pretrain": "engine.pretraining", "finetune": "engine.finetune"}


@dataclass(frozen=True)
class RunInfo:
    name: str
    path: Path
    kind: str
    preset: str
    state: str
    step: int
    total_steps: int
    last_loss: float | None
    last_val_loss: float | None
    tokens_per_s: float | None
    started_at: float | None
    ended_at: float | None
    pid: int | None
    message: str
    nproc: int


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(data, indent=1))


def update_status(run_dir: Path, **fields: Any) -> dict[str, Any]:
    """Merge fields into status.json (atomic replace; last writer wins)."""
    status = read_json(run_dir / "status.json")
    status.update(fields)
    write_json(run_dir / "status.json", status)
    return status


def pid_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie (a dead child we have not reaped)."""
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
        if reaped == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _tail_events(path: Path, max_bytes: int = 65536) -> list[dict[str, Any]]:
    """Events in the last max_bytes of metrics.jsonl: enough for the latest loss without reading it all."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            chunk = handle.read()
    except OSError:
        return []
    lines = chunk.split(b"\n")
    if size > max_bytes:
        lines = lines[1:]  # the first line is probably cut
    return [e for e in (parse_line(raw.decode("utf-8", "replace")) for raw in lines) if e is not None]


def available_devices(device: str) -> tuple[str, int]:
    """(kind, count) of devices a run on `device` could use; imports torch only for GPUs."""
    if device == "cpu":
        return "cpu", os.cpu_count() or 1
    import torch

    if device in ("auto", "cuda") and torch.cuda.is_available():
        return "cuda", torch.cuda.device_count()
    if device == "cuda":
        raise DeviceError("run.device is 'cuda' but no CUDA GPU is available", hint="use run.device=cpu or auto")
    return "cpu", os.cpu_count() or 1


class RunManager:
    """Creates, launches, stops, resumes, lists and deletes runs under one root folder."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else paths.runs_dir()

    # ------------------------------------------------------------------ paths and reading
    def run_dir(self, name: str) -> Path:
        return self.root / paths.validate_name(name)

    def _info(self, run_dir: Path) -> RunInfo:
        meta = read_json(run_dir / "run.json")
        status = read_json(run_dir / "status.json")
        events = _tail_events(run_dir / "metrics.jsonl")
        last_train = next((e for e in reversed(events) if e["kind"] == "train"), None)
        last_val = next((e for e in reversed(events) if e["kind"] == "val"), None)
        state = status.get("state", "created")
        message = status.get("message", "")
        pid = status.get("pid")
        if state == "running" and (not isinstance(pid, int) or not pid_alive(pid)):
            # the process died without recording why (SIGKILL, OOM killer, reboot)
            state, message = "failed", "the training process is gone without recording an end state"
        steps = [e["step"] for e in (last_train, last_val) if e] + [status.get("step", 0)]
        return RunInfo(
            name=run_dir.name,
            path=run_dir,
            kind=meta.get("kind", "pretrain"),
            preset=meta.get("preset", ""),
            state=state,
            step=max(s for s in steps if isinstance(s, int)),
            total_steps=int(status.get("total_steps") or meta.get("total_steps") or 0),
            last_loss=last_train.get("loss") if last_train else None,
            last_val_loss=last_val.get("val_loss") if last_val else None,
            tokens_per_s=last_train.get("tokens_per_s") if last_train else None,
            started_at=status.get("started_at"),
            ended_at=status.get("ended_at"),
            pid=pid if isinstance(pid, int) else None,
            message=message,
            nproc=int(meta.get("nproc", 1)),
        )

    def list_runs(self) -> list[RunInfo]:
        if not self.root.is_dir():
            return []
        runs = [self._info(d) for d in self.root.iterdir() if d.is_dir() and (d / "run.json").exists()]
        return sorted(runs, key=lambda r: read_json(r.path / "run.json").get("created_at", 0), reverse=True)

    def get(self, name: str) -> RunInfo:
        run_dir = self.run_dir(name)
        if not (run_dir / "run.json").exists():
            raise RunError(f"no run named {name!r} in {self.root}", hint="list runs with: nanogpt-tui runs")
        return self._info(run_dir)

    def config(self, name: str) -> Hyperparameters:
        return load_toml(self.run_dir(name) / "config.toml")

    # ------------------------------------------------------------------ creating and launching
    def _fresh_name(self, hp: Hyperparameters) -> str:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        base = f"{hp.preset}-{stamp}"
        name, n = base, 1
        while (self.root / name).exists():
            n += 1
            name = f"{base}-{n}"
        return name

    def create(self, hp: Hyperparameters, name: str | None = None, *, kind: str = "pretrain", nproc: int = 1,
               nnodes: int = 1, node_rank: int = 0, rdzv_endpoint: str | None = None,
               parent: str | None = None) -> RunInfo:
        if kind not in ENTRY_MODULES:
            raise RunError(f"unknown run kind {kind!r}")
        if nproc < 1 or nnodes < 1:
            raise DeviceError("--nproc and --nnodes must be at least 1")
        if nnodes > 1 and not rdzv_endpoint:
            raise RunError("a multi-node run needs a rendezvous endpoint", hint="pass --rdzv-endpoint HOST:PORT (the first node)")
        hp = resolve_paths(align_vocab(hp), Path.cwd())
        validate(hp)
        device_kind, count = available_devices(hp.run.device)
        if nproc > count:
            raise DeviceError(
                f"--nproc {nproc} is more than the {count} {device_kind.upper()} device(s) available here",
                hint=f"use --nproc {count} or fewer",
            )
        name = paths.validate_name(name) if name else self._fresh_name(hp)
        run_dir = self.root / name
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            run_dir.mkdir()  # fails if it exists: two launches with one name cannot both win
        except FileExistsError:
            raise RunError(f"a run named {name!r} already exists", hint="choose another --name or resume it") from None
        save_toml(hp, run_dir / "config.toml")
        write_json(run_dir / "run.json", {
            "name": name, "kind": kind, "preset": hp.preset, "created_at": time.time(),
            "nproc": nproc, "nnodes": nnodes, "node_rank": node_rank, "rdzv_endpoint": rdzv_endpoint,
            "parent": parent, "total_steps": hp.train.num_iterations, "device": device_kind,
        })
        write_json(run_dir / "status.json", {"state": "created", "step": 0, "total_steps": hp.train.num_iterations})
        return self._info(run_dir)

    def torchrun_command(self, name: str, *, node_rank: int | None = None, resume: bool = False,
                         python: str | None = None) -> list[str]:
        """The training command; one process runs plain `python -m`, more go through torchrun."""
        run_dir = self.run_dir(name)
        meta = read_json(run_dir / "run.json")
        module = ENTRY_MODULES[meta.get("kind", "pretrain")]
        python = python or sys.executable
        tail = ["-m", module, "--run-dir", str(run_dir.resolve())] + (["--resume"] if resume else [])
        nproc, nnodes = int(meta.get("nproc", 1)), int(meta.get("nnodes", 1))
        if nproc == 1 and nnodes == 1:
            return [python, *tail]
        launcher = [python, "-m", "torch.distributed.run"]
        if nnodes == 1:
            launcher += ["--standalone", f"--nproc-per-node={nproc}"]
        else:
            rank = meta.get("node_rank", 0) if node_rank is None else node_rank
            launcher += [f"--nnodes={nnodes}", f"--node-rank={rank}", f"--nproc-per-node={nproc}",
                         "--rdzv-backend=c10d", f"--rdzv-endpoint={meta['rdzv_endpoint']}",
                         f"--rdzv-id={name}"]
        return launcher + tail

    def launch(self, name: str, *, resume: bool = False) -> RunInfo:
        """Start the run detached (own session), output appended to train.log."""
        info = self.get(name)
        if info.kind not in ENTRY_MODULES:
            raise RunError(f"run {name!r} holds an imported checkpoint ({info.kind}) and cannot be trained",
                           hint="fine-tune from its checkpoint instead")
        if info.state == "running":
            raise RunError(f"run {name!r} is already running (pid {info.pid})")
        run_dir = info.path
        (run_dir / STOP_REQUEST).unlink(missing_ok=True)
        command = self.torchrun_command(name, resume=resume)
        meta = read_json(run_dir / "run.json")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        # the children start in the run directory, so a source checkout that is not pip-installed
        # (python -m nanogpt_tui from the repository) must still find the engine package
        source_root = str(Path(__file__).resolve().parents[1])
        paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        if source_root not in paths:
            env["PYTHONPATH"] = os.pathsep.join([source_root, *paths])
        if meta.get("device") == "cpu" and "OMP_NUM_THREADS" not in os.environ:
            # torchrun would pin each worker to one thread; share the cores out instead
            env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // int(meta.get("nproc", 1))))
        write_json(run_dir / "command.json", {"command": command})
        import subprocess

        # the supervisor starts with stop signals blocked (the mask is inherited) until it ignores them
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGHUP, signal.SIGINT})
        try:
            with open(run_dir / "train.log", "ab") as log:
                process = subprocess.Popen(
                    [sys.executable, "-m", "engine.launcher", "--run-dir", str(run_dir.resolve())],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True, env=env, cwd=str(run_dir),
                )
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        update_status(run_dir, state="running", pid=process.pid, started_at=time.time(), ended_at=None,
                      exit_code=None, message="resuming" if resume else "starting")
        return self._info(run_dir)

    def create_and_launch(self, hp: Hyperparameters, name: str | None = None, **kwargs: Any) -> RunInfo:
        info = self.create(hp, name, **kwargs)
        return self.launch(info.name)

    def resume(self, name: str) -> RunInfo:
        info = self.get(name)
        if info.state == "running":
            raise RunError(f"run {name!r} is still running", hint="stop it first")
        return self.launch(name, resume=True)

    def stop(self, name: str) -> None:
        """Ask the run to save a checkpoint and stop: mark the request, SIGTERM the process group."""
        info = self.get(name)
        if info.state != "running" or info.pid is None:
            raise RunError(f"run {name!r} is not running (state: {info.state})")
        atomic_write_text(info.path / STOP_REQUEST, str(time.time()))
        try:
            os.killpg(info.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    def delete(self, name: str) -> None:
        info = self.get(name)
        if info.state == "running":
            raise RunError(f"run {name!r} is running", hint="stop it before deleting it")
        shutil.rmtree(info.path)

    def wait(self, name: str, timeout: float = 600.0, poll: float = 0.2) -> RunInfo:
        """Block until the run reaches an end state (used by tests and the attached CLI)."""
        deadline = time.monotonic() + timeout
        while True:
            info = self.get(name)
            if info.state in TERMINAL_STATES:
                return info
            if time.monotonic() > deadline:
                raise RunError(f"run {name!r} did not finish within {timeout:.0f} s")
            time.sleep(poll)
