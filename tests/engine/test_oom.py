"""Out of memory in the middle of a step ends the run `failed` with a fix-it message, not a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from engine.metrics import read_metrics
from engine.runs import RunManager
from tests.helpers import tiny_config, write_corpus

# the third forward is the first micro-batch of step 2 (2 micro-batches per step): an OOM mid-run
_RUN_WITH_OOM = """
import sys
import torch
from engine.model import GPT

calls = []
original = GPT.forward

def forward(self, *args, **kwargs):
    calls.append(1)
    if len(calls) == 3:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 79.1 GiB total)")
    return original(self, *args, **kwargs)

GPT.forward = forward
from engine.train.pretraining import main
sys.exit(main(["--run-dir", sys.argv[1]]))
"""


def test_out_of_memory_becomes_a_device_error_with_a_hint(tmp_path: Path) -> None:
    hp = tiny_config(write_corpus(tmp_path), "train.num_iterations=5", "run.val_every=0", "run.sample_tokens=0")
    run_dir = RunManager().create(hp, "oom").path
    result = subprocess.run([sys.executable, "-c", _RUN_WITH_OOM, str(run_dir)], capture_output=True, text=True,
                            timeout=180, check=False, cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    error = next(line for line in lines if line.startswith("error: "))
    hint = next(line for line in lines if line.startswith("hint: "))
    assert "ran out of memory" in error and "Tried to allocate 20.00 GiB" in error, error
    # micro_batch_size 2 -> 1 keeps the batch of 4 sequences with 4 accumulation steps
    assert "--set train.micro_batch_size=1" in hint and "accumulates 4" in hint, hint
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "failed" and "ran out of memory" in status["message"], status
    assert "train.micro_batch_size=1" in status["message"], "the status must carry the fix"
    events = read_metrics(run_dir / "metrics.jsonl")
    assert [e["step"] for e in events if e["kind"] == "train"] == [1], "step 1 should have finished before the OOM"
    assert events[-1]["kind"] == "status" and events[-1]["state"] == "failed"
