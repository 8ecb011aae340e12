"""`python -m engine.serve`: the detached server process the app starts (the CLI runs `nanogpt-tui serve`)."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from engine.errors import EngineError
from engine.serve.server import serve_checkpoint, write_record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.serve")
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--record-dir", required=True)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--model-name")
    parser.add_argument("--max-batch", type=int, default=8)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    record = Path(args.record_dir)
    try:
        serve_checkpoint(Path(args.checkpoint), host=args.host, port=args.port, record_dir=record, device=args.device,
                         model_name=args.model_name, max_batch=args.max_batch, say=lambda line: print(line, flush=True))
    except EngineError as err:
        print(f"error: {err.message}" + (f"\nhint: {err.hint}" if err.hint else ""), file=sys.stderr, flush=True)
        write_record(record, state="failed", message=err.message, ended_at=time.time())
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
