"""`nanogpt-tui estimate`: parameters, tokens per step, memory per rank and FLOPs of a config, before launching."""

from __future__ import annotations

import argparse

from engine.config import align_vocab

GIB = 1 << 30


def _gib(count: int) -> str:
    return f"{count / GIB:.2f} GiB"


def cmd_estimate(args: argparse.Namespace) -> int:
    from engine.estimate import estimate, memory_per_rank
    from nanogpt_tui.commands.train import resolve_config

    if args.nproc < 1 or args.nnodes < 1:
        from engine.errors import ConfigError

        raise ConfigError("--nproc and --nnodes must be at least 1")
    hp = align_vocab(resolve_config(args))
    ranks = args.nproc * args.nnodes
    est = estimate(hp, ranks)
    memory = memory_per_rank(hp, ranks)
    t = hp.train
    on_gpu = hp.run.device != "cpu"
    print(f"{hp.preset} on {ranks} rank(s) ({args.nnodes} node(s) x {args.nproc})")
    print(f"parameters       {est.num_params / 1e6:.1f}M")
    print(f"tokens per step  {est.tokens_per_step:,} = {t.batch_size} sequences x {t.train_seq_len:,} tokens; "
          f"each rank accumulates {est.accum_steps} micro-batch(es) of {t.micro_batch_size}")
    print(f"FLOPs per step   {est.flops_per_step / 1e12:.1f} TFLOP")
    print(f"memory per rank  {_gib(memory.total)} = weights {_gib(memory.weights)} + gradients {_gib(memory.gradients)}"
          f" + optimiser {_gib(memory.optimizer_state)} + activations {_gib(memory.activations)}"
          f" ({'bf16' if on_gpu and hp.run.dtype != 'float32' else 'fp32'} activations, before torch.compile's savings)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from nanogpt_tui.commands.train import add_config_arguments

    parser = subparsers.add_parser("estimate", help="print parameters, tokens per step and memory of a config")
    add_config_arguments(parser)
    parser.add_argument("--nproc", type=int, default=1, help="processes (GPUs) per node")
    parser.add_argument("--nnodes", type=int, default=1, help="number of machines")
    parser.set_defaults(func=cmd_estimate)
