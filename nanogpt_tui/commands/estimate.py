"""`nanogpt-tui estimate`: parameters, tokens per step, memory per rank and FLOPs of a config, before launching."""

from __future__ import annotations

import argparse

from engine.config import align_vocab
from nanogpt_tui.commands.options import number

GIB = 1 << 30


def _gib(count: int) -> str:
    return f"{count / GIB:.2f} GiB"


def cmd_estimate(args: argparse.Namespace) -> int:
    from engine.estimate import estimate, fit_problem, memory_per_rank
    from engine.runs import available_devices
    from nanogpt_tui.commands.train import resolve_config

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
    kind, _ = available_devices(hp.run.device)
    too_big = fit_problem(hp, args.nproc, kind)
    if too_big is not None:
        print(f"warning: on this machine {too_big}: a launch here is refused")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from nanogpt_tui.commands.train import add_config_arguments

    parser = subparsers.add_parser("estimate", help="print parameters, tokens per step and memory of a config")
    add_config_arguments(parser)
    parser.add_argument("--nproc", type=number("nproc"), default=1, help="processes (GPUs) per node")
    parser.add_argument("--nnodes", type=number("nnodes"), default=1, help="number of machines")
    parser.set_defaults(func=cmd_estimate)
