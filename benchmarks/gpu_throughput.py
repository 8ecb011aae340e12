"""GPU throughput of the speedrun-124m preset on one GPU, against the original's own code on the same card.

Ours: the real Trainer (fast paths from engine.train.device) with and without torch.compile and the FP8
head. The original: its `model.py` (justuskarlsson/nanogpt 776714a) imported unchanged from
a checkout, driven by the body of its `pretraining.py` training loop (bf16 embeddings, compiled
model, grad all-reduce, LR and momentum schedule); its script itself needs 8 GPUs and FineWeb.
Both read the same synthetic shard (random repeats of fixed phrases, so the loss falls) at the
speedrun's 48Ki-token sequence, from the same mid-training step (same window, LR and momentum).

    python benchmarks/gpu_throughput.py --original ~/nanogpt-original      # all variants, 20 timed steps
    python benchmarks/gpu_throughput.py --original ~/nanogpt-original --quick

Last line: `tokens_per_s=… mfu=… original_tokens_per_s=… ratio_vs_original=…` (ours = the default
fast paths; nan for what could not be measured). A variant that fails is reported and the rest
still run. Without a CUDA GPU it prints why and exits 2.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import math
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.config import Hyperparameters, apply_overrides, preset
from engine.data.shards import write_shard

# dense bf16 tensor-core peaks in TFLOP/s (vendor datasheets); the first matching name wins
PEAK_BF16_TFLOPS = [("B200", 2250.0), ("H200", 989.4), ("H100 PCIe", 756.0), ("H100 NVL", 835.0),
                    ("H100", 989.4), ("H800", 989.4), ("A100", 312.0), ("A800", 312.0), ("L40S", 362.1),
                    ("L40", 181.0), ("RTX 4090", 165.2), ("L4", 121.0)]
NUM_ITERATIONS = 4000
START_STEP = NUM_ITERATIONS // 2  # mid-training: a 7-block window, full LR, momentum warmed up


@dataclass
class Measurement:
    name: str
    tokens_per_s: float
    step_ms: float
    first_step_s: float  # compilation included
    loss: float  # mean per-token loss over the last timed steps
    error: str = ""


def peak_tflops(device_name: str) -> float | None:
    return next((peak for key, peak in PEAK_BF16_TFLOPS if key in device_name), None)


def synthetic_shard(path: Path, num_tokens: int, bos_id: int, seed: int = 0) -> Path:
    """Random picks of 4096 fixed 64-token phrases, a BOS every ~32 phrases: learnable, document-masked."""
    rng = np.random.default_rng(seed)
    phrases = rng.integers(0, bos_id, size=(4096, 64))
    tokens = phrases[rng.integers(0, len(phrases), size=num_tokens // 64 + 1)].reshape(-1)[:num_tokens]
    tokens[:: 64 * 32] = bos_id
    write_shard(path, tokens)
    return path


def bench_hp(compile_model: bool, device: str) -> Hyperparameters:
    return apply_overrides(preset("speedrun-124m"), [
        f"run.compile='{'on' if compile_model else 'off'}'", f"run.device='{device}'", "train.batch_size=1",
        "train.micro_batch_size=1", f"train.num_iterations={NUM_ITERATIONS}", "run.val_every=0",
    ])


def _timed(name: str, step_fn, steps: int, warmup: int, device: torch.device, tokens_per_step: int) -> Measurement:
    times, losses = [], []
    for index in range(warmup + steps):
        start = time.perf_counter()
        loss = step_fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
        losses.append(loss)
    step_s = statistics.median(times[warmup:])
    return Measurement(name, tokens_per_step / step_s, step_s * 1000, times[0], statistics.fmean(losses[-5:]))


def measure_ours(hp: Hyperparameters, shard: Path, fp8: bool, steps: int, warmup: int, run_dir: Path) -> Measurement:
    from engine.train.distributed import init_distributed
    from engine.train.task import PretrainTask
    from engine.train.trainer import StopSignal, Trainer

    ctx = init_distributed(hp.run.device)
    torch.manual_seed(0)
    data = SimpleNamespace(train_files=[shard], val_files=[], tokenizer=None)
    trainer = Trainer(hp, run_dir, ctx, PretrainTask(data), stop=StopSignal(), resume=False)
    trainer.model.use_fp8_head = fp8 and trainer.fast_paths.fp8_head
    trainer.step = START_STEP
    name = f"ours compile={'on' if trainer.fast_paths.compile else 'off'} fp8={'on' if trainer.model.use_fp8_head else 'off'}"

    def step() -> float:
        loss = float(trainer.train_step())  # _timed waits for the device anyway
        trainer.step += 1
        return loss

    return _timed(name, step, steps, warmup, ctx.device, hp.train.batch_size * hp.train.train_seq_len)


def load_original(checkout: Path) -> ModuleType:
    """The original's model.py as a module, unchanged (it compiles Newton-Schulz at import, which needs CUDA)."""
    source = checkout / "model.py"
    spec = importlib.util.spec_from_file_location("original_model", source)
    if spec is None or spec.loader is None or not source.is_file():
        raise SystemExit(f"error: {source} not found: --original must point at a checkout of the original")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    missing = [n for n in ("create_model", "setup_optimizers", "get_window_size_blocks", "get_lr") if not hasattr(module, n)]
    if missing:
        raise SystemExit(f"error: {source} lacks {', '.join(missing)}: not the original's model.py")
    return module


def measure_original(original: ModuleType, shard: Path, seq_len: int, steps: int, warmup: int,
                     device: torch.device) -> Measurement:
    """The loop body of the original's pretraining.py on one rank (its Muon all-gathers, so a 1-rank group)."""
    import torch.distributed as dist

    from engine.data.shards import _load_data_shard

    if not dist.is_initialized():
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29517")
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=0, world_size=1)
    torch.manual_seed(0)
    model = original.create_model(vocab_size=50257, max_seq_len=seq_len).to(device)
    for module in model.modules():
        if isinstance(module, torch.nn.Embedding):
            module.bfloat16()
    optimizers = original.setup_optimizers(model, 0, 1)
    model = torch.compile(model, dynamic=False)
    tokens = _load_data_shard(shard)
    state = {"step": START_STEP, "pos": 0}

    def step() -> float:
        at, pos = state["step"], state["pos"]
        window = tokens[pos : pos + seq_len + 1]
        inputs = window[:-1].to(device=device, dtype=torch.int32, non_blocking=True)
        targets = window[1:].to(device=device, dtype=torch.int64, non_blocking=True)
        loss = model(inputs, targets, original.get_window_size_blocks(at, NUM_ITERATIONS))
        loss.backward()
        for param in model.parameters():
            dist.all_reduce(param.grad, op=dist.ReduceOp.AVG)
        for opt in optimizers:
            for group in opt.param_groups:
                group["lr"] = group["initial_lr"] * original.get_lr(at, NUM_ITERATIONS)
        for group in optimizers[1].param_groups:
            frac = min(at / 300, 1)
            group["momentum"] = (1 - frac) * 0.85 + frac * 0.95
        for opt in optimizers:
            opt.step()
        model.zero_grad(set_to_none=True)
        state["step"], state["pos"] = at + 1, pos + seq_len
        return loss.item() / seq_len  # the original sums the loss while training

    return _timed("original (model.py)", step, steps, warmup, device, seq_len)


def _guarded(name: str, run) -> Measurement:
    """One variant; a failing variant (out of memory, a compile error, anything) is reported, not fatal,
    so the others, and the original, are still timed."""
    try:
        return run()
    except torch.OutOfMemoryError as err:
        return _failed(name, f"out of memory: {str(err).splitlines()[0]}")
    except Exception as err:  # noqa: BLE001 - the benchmark reports the variant's failure and goes on
        return _failed(name, f"failed: {type(err).__name__}: {(str(err).strip().splitlines() or [''])[0]}")
    finally:
        torch._dynamo.reset()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _failed(name: str, error: str) -> Measurement:
    return Measurement(name, math.nan, math.nan, math.nan, math.nan, error=error)


def summary_line(ours: Measurement, original: Measurement | None, flops_per_token: float, peak: float | None) -> str:
    """The benchmark's last line; nan for what was not measured (no GPU, a failed variant, no --original)."""
    mfu = ours.tokens_per_s * flops_per_token / (peak * 1e12) if peak else math.nan
    original_tps = original.tokens_per_s if original is not None else math.nan
    ratio = ours.tokens_per_s / original_tps if original_tps and not math.isnan(original_tps) else math.nan
    return (f"tokens_per_s={ours.tokens_per_s:.0f} mfu={mfu:.3f} original_tokens_per_s={original_tps:.0f} "
            f"ratio_vs_original={ratio:.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--original", type=Path, help="a checkout of the original (justuskarlsson/nanogpt @ 776714a)")
    parser.add_argument("--quick", action="store_true", help="5 timed steps; only the default fast paths")
    parser.add_argument("--steps", type=int, help="timed steps per variant (default 20, --quick 5)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA GPU here: this benchmark measures the GPU fast paths; run it on a machine with one",
              file=sys.stderr)
        print(summary_line(_failed("ours", "no CUDA GPU"), None, math.nan, None))
        return 2
    from engine.estimate import estimate
    from engine.train.device import detect_capabilities

    device = torch.device("cuda", 0)
    torch.cuda.set_device(device)
    caps = detect_capabilities(device)
    steps, warmup = args.steps or (5 if args.quick else 20), 3
    hp = bench_hp(True, "cuda")
    seq_len = hp.train.train_seq_len
    flops_per_token = estimate(hp, 1).flops_per_step / estimate(hp, 1).tokens_per_step
    peak = peak_tflops(caps.name)
    print(f"{caps.name} (sm{''.join(map(str, caps.compute_capability or ()))}, {caps.count} visible), "
          f"torch {caps.torch_version}, CUDA {caps.cuda_version}, driver {caps.driver}; "
          f"seq_len {seq_len}, {steps} timed steps after {warmup}", flush=True)
    original = load_original(args.original.expanduser()) if args.original else None
    with tempfile.TemporaryDirectory() as tmp:
        shard = synthetic_shard(Path(tmp) / "train_000000.bin", (warmup + steps + 2) * seq_len, hp.model.bos_id)
        variants = [(True, True)] if args.quick else [(False, False), (True, False), (True, True)]
        results = []
        for index, (compile_model, fp8) in enumerate(variants):
            run_dir = Path(tmp) / f"run{index}"
            run_dir.mkdir()
            variant_hp = bench_hp(compile_model, "cuda")
            results.append(_guarded(f"ours compile={compile_model} fp8={fp8}", lambda hp=variant_hp, fp8=fp8, run_dir=run_dir:
                                    measure_ours(hp, shard, fp8, steps, warmup, run_dir)))
            print(_format(results[-1], flops_per_token, peak), flush=True)
        # ours = the default fast paths (the last variant), or the fastest that ran if it failed
        ours = results[-1] if not results[-1].error else max(
            results, key=lambda r: -1.0 if r.error else r.tokens_per_s)
        theirs = None
        if original is not None:
            theirs = _guarded("original", lambda: measure_original(original, shard, seq_len, steps, warmup, device))
            print(_format(theirs, flops_per_token, peak), flush=True)
    if theirs is not None:
        print(f"loss after {warmup + steps} steps: ours {ours.loss:.4f}, original {theirs.loss:.4f}")
    print(summary_line(ours, theirs, flops_per_token, peak))
    return 0


def _format(result: Measurement, flops_per_token: float, peak: float | None) -> str:
    if result.error:
        return f"{result.name:<28} {result.error}"
    mfu = f"{result.tokens_per_s * flops_per_token / (peak * 1e12):.1%}" if peak else "n/a (unknown peak)"
    return (f"{result.name:<28} {result.tokens_per_s:>10,.0f} tok/s  {result.step_ms:8.1f} ms/step  "
            f"first step {result.first_step_s:6.1f} s  MFU {mfu}  loss {result.loss:.4f}")


if __name__ == "__main__":
    sys.exit(main())
