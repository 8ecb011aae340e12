"""Generation benchmark: tokens/s with and without the KV cache at 512 tokens of context, time to first token.

The model is the default preset's (shakespeare-cpu) with random weights: speed does not depend on
what was learned. The uncached path re-runs the whole context for every token, as the original's
chat.py and eval.py do. Last line:
`kv_speedup=… first_token_ms=… tokens_per_s_cached=… tokens_per_s_uncached=… peak_mem_mb=…`.

    python benchmarks/generation.py                                    # CPU, default preset
    python benchmarks/generation.py --quick                            # fewer tokens and repeats
    python benchmarks/generation.py --preset speedrun-124m --device cuda
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.config import DEFAULT_PRESET, align_vocab, preset
from engine.inference.generate import Generator, SamplingParams, auto_device, auto_dtype
from engine.model import GPT


class ByteTokenizer:
    """Decodes every id to three ASCII bytes: enough to exercise streaming without training a BPE."""

    kind = "bench"

    def __init__(self, vocab_size: int, bos_id: int) -> None:
        self.vocab_size = vocab_size
        self.bos_id = bos_id
        self.special_tokens = {"<|bos|>": bos_id}

    def decode_bytes(self, ids: Sequence[int]) -> bytes:
        return b"".join(b"%03d" % (index % 1000) for index in ids)


def build_model(preset_name: str, device: torch.device, dtype: torch.dtype) -> GPT:
    """The preset's model with random weights; BOS is kept from the top so greedy decoding never stops early."""
    config = align_vocab(preset(preset_name)).model
    torch.manual_seed(0)
    with torch.device("meta"):
        model = GPT(config)
    model.to_empty(device=device)
    model.init_weights()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("c_proj.weight"):
                param.normal_(std=0.02)
        model.lm_head.weight.normal_(std=1.0)
        model.lm_head.weight[config.bos_id] = 0.0
    model.attention_backend = "sdpa"
    return model.to(dtype).eval()


def timed_generation(generator: Generator, prompt: list[int], new_tokens: int) -> tuple[float, float, int]:
    """(seconds to the first token, seconds for the rest, tokens produced)."""
    params = SamplingParams(temperature=0, max_new_tokens=new_tokens)
    sync = torch.cuda.synchronize if generator.device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    first = None
    produced = 0
    for chunk in generator.generate(prompt, params):
        if chunk.token_id is not None:
            produced += 1
        if first is None:
            sync()
            first = time.perf_counter() - start
    sync()
    total = time.perf_counter() - start
    assert first is not None, "the generator produced nothing"
    return first, total - first, produced


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default=DEFAULT_PRESET)
    parser.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda or mps")
    parser.add_argument("--context", type=int, default=512, help="prompt tokens (default 512)")
    parser.add_argument("--tokens", type=int, default=128, help="new tokens per measurement (default 128)")
    parser.add_argument("--repeats", type=int, default=3, help="measurements per path; the best counts (default 3)")
    parser.add_argument("--quick", action="store_true", help="32 tokens, 2 repeats")
    args = parser.parse_args()
    if args.quick:
        args.tokens, args.repeats = 32, 2
    device = auto_device(args.device)
    dtype = auto_dtype(device)
    model = build_model(args.preset, device, dtype)
    config = model.config
    tokenizer = ByteTokenizer(config.vocab_size, config.bos_id)
    # one document of `context` tokens: BOS, then random ids that are not BOS
    body = torch.randint(0, config.vocab_size - 1, (args.context - 1,), generator=torch.Generator().manual_seed(1))
    prompt = [config.bos_id, *(body + (body >= config.bos_id).long()).tolist()]
    max_context = args.context + args.tokens + 1  # room for everything: no sliding while measuring
    cached = Generator(model, tokenizer, device=device, dtype=dtype, max_context=max_context)
    uncached = Generator(model, tokenizer, device=device, dtype=dtype, max_context=max_context, use_cache=False)
    print(f"model: {args.preset}, {config.num_layers} layers, dim {config.model_dim}, vocab {config.vocab_size}, "
          f"{model.num_params() / 1e6:.1f} M parameters on {device} ({dtype}), {torch.get_num_threads()} CPU threads")
    print(f"context {args.context} tokens, {args.tokens} new tokens, best of {args.repeats}")
    timed_generation(cached, prompt, 4)  # warm-up: allocations, kernels, the cache buffers
    timed_generation(uncached, prompt, 2)
    best_first, best_cached_rate, best_uncached_rate = float("inf"), 0.0, 0.0
    for _ in range(args.repeats):
        cached.reset()  # the first token must include the whole prefill, not a reused prefix
        first, rest, produced = timed_generation(cached, prompt, args.tokens)
        assert produced == args.tokens, f"cached generation stopped after {produced} tokens"
        best_first = min(best_first, first)
        best_cached_rate = max(best_cached_rate, (produced - 1) / rest)
        first, rest, produced = timed_generation(uncached, prompt, args.tokens)
        best_uncached_rate = max(best_uncached_rate, produced / (first + rest))
        print(f"  best so far: cached first token {best_first * 1000:.1f} ms, {best_cached_rate:.1f} tokens/s; "
              f"uncached {best_uncached_rate:.1f} tokens/s")
    speedup = best_cached_rate / best_uncached_rate
    peak = peak_memory_mb(device)
    print(f"KV cache: {speedup:.1f}x faster (target >= 5x); first token {best_first * 1000:.1f} ms (target < 200 ms); "
          f"peak memory {peak:.0f} MB ({'GPU allocated' if device.type == 'cuda' else 'process RSS'})")
    print(f"kv_speedup={speedup:.2f} first_token_ms={best_first * 1000:.1f} tokens_per_s_cached={best_cached_rate:.1f} "
          f"tokens_per_s_uncached={best_uncached_rate:.1f} peak_mem_mb={peak:.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
