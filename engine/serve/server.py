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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from engine.errors import ConfigError
from engine.runs.protocol import read_json, write_json

log = logging.getLogger(__name__)

API_KEY_ENV = "NANOGPT_TUI_API_KEY"
RECORD_FILE = "server.json"
LOG_FILE = "server.log"
# below this many parameters a CPU server decodes with one torch thread (see decode_threads)
SMALL_MODEL_PARAMS = 50_000_000


def require_serve_extra() -> None:
    """ConfigError naming the missing package when the `[serve]` extra is not installed."""
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as err:
        raise ConfigError(f"serving needs {err.name}, which is not installed",
                          hint="pip install 'nanogpt-tui[serve]'") from err


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


def default_model_name(checkpoint: Path) -> str:
    """The run's name for a run's checkpoint (runs/NAME/checkpoints/step_*.pt), else the file's or folder's name."""
    checkpoint = Path(checkpoint)
    if checkpoint.parent.name == "checkpoints":
        return checkpoint.parent.parent.name
    return checkpoint.stem if checkpoint.is_file() else checkpoint.name


def decode_threads(device_type: str, num_params: int) -> int | None:
    """One torch thread for a small model on the CPU unless OMP_NUM_THREADS says otherwise; None: leave torch's.

    Decoding one token of a model this small is a series of tiny operations: threads add little
    and, when the cores are busy (the clients run on the same machine), OpenMP's waiting threads
    slow each step down several times.
    """
    if device_type != "cpu" or "OMP_NUM_THREADS" in os.environ or num_params > SMALL_MODEL_PARAMS:
        return None
    return 1


def serve_checkpoint(checkpoint: Path, *, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
                     record_dir: Path | None = None, device: str = "auto", template: str = "",
                     model_name: str | None = None, trust_pickle: bool = False, max_batch: int = 8,
                     say: Callable[[str], None] = lambda line: None) -> None:
    """Load the checkpoint and serve it until SIGINT/SIGTERM: what `nanogpt-tui serve` and the app's server run.

    `say` gets the lines a person should read (notes, the URL, a warning about an open address).
    """
    from engine.inference.generate import Generator
    from engine.importer import load_model
    from engine.serve.service import ServedModel

    sock = bind_socket(host, port)
    try:
        loaded = load_model(checkpoint, trust_pickle=trust_pickle)
        for note in loaded.notes:
            say(f"note: {note}")
        generator = Generator.from_checkpoint(loaded, device=device)
        threads = decode_threads(generator.device.type, loaded.model.num_params())
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
            say(f"note: {threads} torch thread for a small model on the CPU (set OMP_NUM_THREADS to choose)")
        served = ServedModel(generator, model_name or default_model_name(loaded.path), template=template,
                             max_batch=max_batch)
        say(f"model: {loaded.model.num_params() / 1e6:.1f}M parameters ({loaded.source_format}, step {loaded.step}) "
            f"on {generator.device}, context {generator.max_context} tokens, template {served.template}")
        say(f"serving {served.name} at {url_of(sock)} (OpenAI-compatible); Ctrl-C stops")
        if not is_loopback(host) and not api_key:
            say(f"warning: listening on {host} without an API key: anyone who can reach this machine can use "
                f"the model (set --api-key or {API_KEY_ENV})")
        serve(served, sock, api_key=api_key, record_dir=record_dir, checkpoint=str(loaded.path))
    finally:
        sock.close()
