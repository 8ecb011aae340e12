"""Servers the app starts like runs: detached `python -m engine.serve` processes, each with a record folder.

`<data dir>/servers/<name>/` holds `server.json` (state starting/running/stopped/failed, pid and its
creation time, url, model, checkpoint; replaced atomically) and `server.log`. A server is listed
while its process lives, so it stays in the list until it is stopped (or dies).
"""

from __future__ import annotations

import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import RunError
from engine.runs.process import child_env, pid_alive, signal_group, spawn_detached
from engine.runs.protocol import read_json
from engine.serve.server import LOG_FILE, RECORD_FILE, default_model_name, write_record

LIVE_STATES = ("starting", "running")
# records (and logs) of ended servers kept for a look at what happened; older ones are removed on start
KEEP_ENDED = 10


@dataclass(frozen=True)
class ServerInfo:
    name: str
    folder: Path
    state: str
    url: str | None
    model: str
    checkpoint: str
    pid: int | None
    message: str

    @property
    def checkpoint_path(self) -> Path:
        return Path(self.checkpoint)


def _info(folder: Path, record: dict[str, Any]) -> ServerInfo:
    pid = record.get("pid")
    return ServerInfo(folder.name, folder, str(record.get("state", "starting")), record.get("url"),
                      str(record.get("model", "")), str(record.get("checkpoint", "")),
                      pid if isinstance(pid, int) else None, str(record.get("message", "")))


class ServerManager:
    """Start, list and stop detached model servers under `root` (the workspace's servers folder)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _alive(self, record: dict[str, Any]) -> bool:
        pid = record.get("pid")
        return isinstance(pid, int) and pid_alive(pid, record.get("pid_started_at"))

    def list(self) -> list[ServerInfo]:
        """Servers whose process is alive, oldest first."""
        found = []
        for folder in sorted(self.root.glob("*/")):
            record = read_json(folder / RECORD_FILE)
            if record.get("state") in LIVE_STATES and self._alive(record):
                found.append((record.get("launched_at", 0), _info(folder, record)))
        return [info for _, info in sorted(found, key=lambda pair: pair[0])]

    def start(self, checkpoint: Path, *, host: str = "127.0.0.1", port: int = 0, device: str = "auto",
              model_name: str | None = None, max_batch: int = 8) -> ServerInfo:
        """Spawn a server for `checkpoint` (port 0: any free one); returns at once, state "starting"."""
        self.prune()
        name = model_name or default_model_name(checkpoint)
        folder = self.root / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
        suffix = 1
        while folder.exists():
            suffix += 1
            folder = self.root / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{suffix}"
        folder.mkdir(parents=True)
        command = [sys.executable, "-m", "engine.serve", "--checkpoint", str(checkpoint), "--host", host,
                   "--port", str(port), "--record-dir", str(folder), "--device", device, "--model-name", name,
                   "--max-batch", str(max_batch)]
        write_record(folder, name=folder.name, state="starting", model=name, checkpoint=str(checkpoint),
                     command=command, launched_at=time.time())
        started = spawn_detached(command, cwd=folder, log_path=folder / LOG_FILE, env=child_env(),
                                 block_stop_signals=False)
        write_record(folder, pid=started.pid, pid_started_at=started.started_at)
        return _info(folder, read_json(folder / RECORD_FILE))

    def prune(self, keep: int = KEEP_ENDED) -> None:
        """Remove the folders of ended servers beyond the newest `keep` (live ones are never touched)."""
        ended = []
        for folder in self.root.glob("*/"):
            record = read_json(folder / RECORD_FILE)
            if record and not (record.get("state") in LIVE_STATES and self._alive(record)):
                ended.append((record.get("launched_at", 0), folder))
        for _, folder in sorted(ended, key=lambda pair: pair[0], reverse=True)[keep:]:
            shutil.rmtree(folder, ignore_errors=True)

    def get(self, name: str) -> ServerInfo:
        folder = self.root / name
        record = read_json(folder / RECORD_FILE)
        if not record:
            raise RunError(f"there is no server {name!r}")
        if record.get("state") in LIVE_STATES and not self._alive(record):
            record["state"], record["message"] = "failed", self._log_tail(folder) or "the server process ended"
        return _info(folder, record)

    def wait_ready(self, name: str, timeout: float = 120.0) -> ServerInfo:
        """Wait until the server listens (its record has the URL); RunError with its log if it ends first."""
        deadline = time.monotonic() + timeout
        while True:
            info = self.get(name)
            if info.state == "running" and info.url:
                return info
            if info.state not in LIVE_STATES:
                raise RunError(f"the server for {info.model} did not start: {info.message}",
                               hint=f"its log: {info.folder / LOG_FILE}")
            if time.monotonic() > deadline:
                raise RunError(f"the server for {info.model} did not start within {timeout:.0f} s",
                               hint=f"its log: {info.folder / LOG_FILE}")
            time.sleep(0.1)

    def stop(self, name: str, timeout: float = 15.0) -> None:
        """SIGTERM the server's process group and wait for it to end (SIGKILL after `timeout`)."""
        folder = self.root / name
        record = read_json(folder / RECORD_FILE)
        pid = record.get("pid")
        if not isinstance(pid, int) or not self._alive(record):
            write_record(folder, state="stopped")
            return
        signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self._alive(record):
            if time.monotonic() > deadline:
                signal_group(pid, signal.SIGKILL)
                write_record(folder, state="stopped", message="killed: it did not stop within the timeout")
                return
            time.sleep(0.05)
        if read_json(folder / RECORD_FILE).get("state") in LIVE_STATES:
            write_record(folder, state="stopped")

    @staticmethod
    def _log_tail(folder: Path, lines: int = 3) -> str:
        try:
            text = (folder / LOG_FILE).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return " | ".join(line for line in text.strip().splitlines()[-lines:])
