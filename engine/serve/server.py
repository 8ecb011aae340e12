"""Start the OpenAI-compatible server under uvicorn, and keep its process record while it runs.

The record (`<data dir>/servers/<name>/server.json`, replaced atomically) says where the server
listens and which process it is, so the app can list it, show its URL and stop it, as it does for runs.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from engine.errors import ConfigError
from engine.runs import read_json, write_json

log = logging.getLogger(__name__)

RECORD_FILE = "server.json"
LOG_FILE = "server.log"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: a free one); ConfigError when it cannot be had."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise ConfigError(f"cannot resolve host {host!r}: {err.strerror}", hint="use an IP address such as 127.0.0.1") from err
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as err:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {err.strerror or err}",
                          hint="choose another --port (or 0 for any free one)") from err
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/v1"


def write_record(record_dir: Path, **fields: Any) -> dict[str, Any]:
    """Merge fields into the server's record (atomic replace)."""
    record = read_json(record_dir / RECORD_FILE)
    record.update(fields)
    write_json(record_dir / RECORD_FILE, record)
    return record


def serve(served: Any, sock: socket.socket, *, api_key: str | None = None, record_dir: Path | None = None,
          checkpoint: str = "") -> None:
    """Answer requests on `sock` until SIGINT/SIGTERM; `served` is an engine.serve.service.ServedModel."""
    import uvicorn

    from engine.serve.app import build_app

    class Server(uvicorn.Server):
        """uvicorn's server, except that SIGINT/SIGTERM end run() normally (uvicorn raises the signal
        again afterwards, which would kill the process before its record says "stopped")."""

        @contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    app = build_app(served, api_key)
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=5)
    server = Server(config)
    if record_dir is not None:
        write_record(record_dir, name=record_dir.name, pid=os.getpid(), url=url_of(sock), model=served.name,
                     checkpoint=checkpoint, api_key_required=bool(api_key), state="running", started_at=time.time(),
                     ended_at=None)
    try:
        server.run(sockets=[sock])
    finally:
        if record_dir is not None:
            write_record(record_dir, state="stopped", ended_at=time.time())
