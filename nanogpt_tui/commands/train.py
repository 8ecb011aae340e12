"""`nanogpt-tui train`: create and launch a pretraining run, then follow it with a progress line."""

from __future__ import annotations

import argparse
import time

from engine.config import DEFAULT_PRESET, Hyperparameters, apply_overrides, load_toml, preset
from engine.errors import ConfigError, RunError
from engine.runs import TERMINAL_STATES, RunInfo, RunManager, Workspace
from nanogpt_tui.commands.options import number


def resolve_config(args: argparse.Namespace) -> Hyperparameters:
    """--config file, else --preset; then --set overrides, all type-checked."""
    hp = load_toml(args.config) if args.config else preset(args.preset or DEFAULT_PRESET)
    return apply_overrides(hp, args.set or [])


def follow(manager: RunManager, name: str) -> RunInfo:
    """Show step/total, loss, tokens/s and ETA until the run ends; Ctrl-C stops it (with a checkpoint)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from engine.metrics import MetricsReader

    console = Console(stderr=True)
    info = manager.get(name)
    reader = MetricsReader(info.path / "metrics.jsonl")
    loss = val = speed = "-"
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TextColumn("loss {task.fields[loss]}  val {task.fields[val]}  {task.fields[speed]} tok/s"),
               TimeRemainingColumn())
    stopping = False
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(name, total=info.total_steps or None, loss=loss, val=val, speed=speed)
        while True:
            try:
                for event in reader.read_new():
                    if event["kind"] == "train":
                        loss, speed = f"{event['loss']:.4f}", f"{event.get('tokens_per_s', float('nan')):.0f}"
                    elif event["kind"] == "val":
                        val = f"{event['val_loss']:.4f}"
                    elif event["kind"] == "sample":
                        # the model's text, not markup ("[/]" in a sample would stop the progress display)
                        progress.console.print(f"[dim]sample at step {event['step']}:[/dim]\n{escape(event['text'])}")
                    progress.update(task, completed=event["step"], loss=loss, val=val, speed=speed)
                info = manager.get(name)
                if info.state in TERMINAL_STATES:
                    return info
                time.sleep(0.25)
            except KeyboardInterrupt:
                if stopping:
                    raise
                stopping = True
                progress.console.print("stopping: saving a checkpoint (Ctrl-C again to leave it running)")
                try:
                    manager.stop(name)
                except RunError:
                    pass


def report_end(info: RunInfo) -> int:
    print(f"{info.name}: {info.state} at step {info.steps_label}"
          + (f" — {info.message}" if info.message else ""))
    if info.state == "stopped":
        print(f"resume with: nanogpt-tui train --resume {info.name}")
    if info.state == "failed":
        print(f"log: {info.path / 'train.log'}")
        return 1
    return 0


def refuse_settings_with_resume(run: str, flags: dict[str, object]) -> None:
    """A resumed run goes on with its own config.toml: a setting given beside --resume would silently not apply."""
    given = [flag for flag, value in flags.items() if value not in (None, False, [], "")]
    if given:
        raise ConfigError(f"--resume continues {run} with its own config.toml, so {', '.join(given)} would be ignored",
                          hint="resume without them, or start a new run with the new settings")


def cmd_train(args: argparse.Namespace) -> int:
    manager = Workspace().runs
    if args.resume:
        refuse_settings_with_resume(args.resume, {"--preset": args.preset, "--config": args.config, "--set": args.set,
                                                  "--name": args.name})
        info = manager.resume(args.resume, kind="pretrain", rerun_finished=args.rerun)
    else:
        hp = resolve_config(args)
        info = manager.create(hp, args.name, nproc=args.nproc, nnodes=args.nnodes, node_rank=args.node_rank,
                              rdzv_endpoint=args.rdzv_endpoint)
        if args.nnodes > 1:
            others = " ".join(manager.torchrun_command(info.name, node_rank=1))
            print(f"on the other nodes run (with --node-rank 1, 2, …):\n  {others}")
        info = manager.launch(info.name)
    print(f"run {info.name} started in {info.path}")
    if args.detach:
        print(f"it keeps running in the background; follow it in the app or with: nanogpt-tui runs")
        return 0
    return report_end(follow(manager, info.name))


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", help=f"preset name (default {DEFAULT_PRESET}): shakespeare-cpu, speedrun-124m, medium")
    parser.add_argument("--config", help="a config.toml to start from instead of a preset")
    parser.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                        help="override one setting, e.g. --set train.num_iterations=200 (repeatable)")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="pretrain a model (default: Shakespeare on this machine)")
    add_config_arguments(parser)
    parser.add_argument("--name", help="run name (default: preset and time)")
    parser.add_argument("--nproc", type=number("nproc"), default=1, help="processes (GPUs, or CPU workers) on this node")
    parser.add_argument("--nnodes", type=number("nnodes"), default=1, help="number of machines")
    parser.add_argument("--node-rank", type=number("node_rank"), default=0, help="this machine's rank among the nodes")
    parser.add_argument("--rdzv-endpoint", help="HOST:PORT of the first node, for multi-node runs")
    parser.add_argument("--detach", action="store_true", help="start the run and return at once")
    parser.add_argument("--resume", metavar="RUN", help="continue a stopped run from its newest checkpoint")
    parser.add_argument("--rerun", action="store_true", help="with --resume: also a finished run (trains its last "
                        "steps again and replaces its final checkpoint)")
    parser.set_defaults(func=cmd_train)
