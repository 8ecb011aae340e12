"""FlexAttention block-mask construction per training step on CPU: ours (tile-level facts) against
torch's create_block_mask (the rule on every (q, k) pair, as the model built it before).

Each step builds two masks (the long and the short window) for one 48Ki-token sequence with a
document every ~3 Ki tokens. create_block_mask materialises all T^2 pairs, so it is timed at the
longest sequence given by --pair-len (default 16Ki; 48Ki needs ~20 GB) and scaled by (48Ki/T)^2.
On CUDA both run inside the compiled step; this measures the work each asks for.

    python benchmarks/block_mask.py [--quick]

Last line: `ours_ms_per_step=… pairwise_ms_per_step=… pairwise_len=… speedup=…`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from torch.nn.attention.flex_attention import create_block_mask

from engine.model.attention import document_ids, flex_block_mask, may_attend

SEQ_LEN, BLOCK, LONG_WINDOW = 48 * 1024, 128, 7


def _docs(seq_len: int) -> torch.Tensor:
    tokens = torch.randint(1, 50257, (1, seq_len), generator=torch.Generator().manual_seed(0))
    tokens[0, ::3 * 1024] = 50256
    return document_ids(tokens, 50256)


def _median_ms(build, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        build()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats, pairwise at 8Ki")
    parser.add_argument("--pair-len", type=int, help="sequence length for create_block_mask (default 16384)")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads for both (default 1: steadier figures on a shared host)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    repeats = 3 if args.quick else 7
    pair_len = args.pair_len or (8192 if args.quick else 16384)
    docs = _docs(SEQ_LEN)
    windows = (LONG_WINDOW, LONG_WINDOW // 2)
    ours = _median_ms(lambda: [flex_block_mask(docs, w, BLOCK) for w in windows], repeats)
    print(f"ours at T={SEQ_LEN}: {ours:.1f} ms per step (2 masks)", flush=True)

    short = _docs(pair_len)

    def pairwise() -> None:
        for window in windows:
            def rule(b, h, q, k, window=window):
                return may_attend(q, k, short[b, q], short[b, k], window, BLOCK)
            create_block_mask(rule, 1, None, pair_len, pair_len, device="cpu")

    measured = _median_ms(pairwise, max(1, repeats // 2))
    scaled = measured * (SEQ_LEN / pair_len) ** 2
    ours_short = _median_ms(lambda: [flex_block_mask(short, w, BLOCK) for w in windows], repeats)
    print(f"create_block_mask at T={pair_len}: {measured:.1f} ms per step (ours there: {ours_short:.1f} ms); "
          f"x{(SEQ_LEN / pair_len) ** 2:.0f} for T={SEQ_LEN}: {scaled:.0f} ms", flush=True)
    print(f"ours_ms_per_step={ours:.1f} pairwise_ms_per_step={scaled:.0f} pairwise_len={pair_len} "
          f"speedup={scaled / ours:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
