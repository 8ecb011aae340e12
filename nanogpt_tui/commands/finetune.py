"""`nanogpt-tui finetune`: check conversation data, then fine-tune a checkpoint on it in a new run."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

from engine.errors import ConfigError

if TYPE_CHECKING:
    from engine.data.conversations import ConversationReport


def _overrides(args: argparse.Namespace) -> list[str]:
    """The flags as `--set` overrides (flags first, so an explicit --set wins)."""
    flags = []
    if args.epochs is not None:
        flags.append(f"finetune.epochs={args.epochs}")
    if args.lr is not None:
        flags.append(f"finetune.lr={args.lr}")
    if args.skip_invalid:
        flags.append("finetune.skip_invalid=true")
    return flags + (args.set or [])


def _print_section(title: str, lines: list[str]) -> None:
    print(title)
    for line in lines:
        print(f"  {line}")


def _check_report(report: ConversationReport, skip_invalid: bool) -> bool:
    """Print the structural summary and problems; True when training may go on."""
    _print_section("data:", report.summary_lines())
    if report.issues:
        label = "skipped" if skip_invalid else "invalid"
        print(f"{label}: {report.problem_text()}")
    if not report.conversations:
        print("no valid conversations")
        return False
    return skip_invalid or not report.issues


def _check_only(args: argparse.Namespace) -> int:
    """--check without a checkpoint: structure and counts only (tokens need the model's tokenizer)."""
    from engine.config import DEFAULT_PRESET, apply_overrides, preset
    from engine.data.conversations import read_conversations

    hp = apply_overrides(preset(DEFAULT_PRESET), _overrides(args))
    report = read_conversations(args.data, max_file_mb=hp.finetune.max_file_mb)
    usable = _check_report(report, skip_invalid=False)
    print("token counts need the model's tokenizer: add --from CHECKPOINT|RUN")
    return 0 if usable else 1


def cmd_finetune(args: argparse.Namespace) -> int:
    from engine.runs import RunManager
    from nanogpt_tui.commands.train import follow, report_end

    manager = RunManager()
    if args.resume:
        info = manager.resume(args.resume)
        print(f"run {info.name} resumed in {info.path}")
        return 0 if args.detach else report_end(follow(manager, info.name))
    if not args.data:
        raise ConfigError("--data is required", hint="give the conversations: --data FILE.json|FILE.jsonl|FOLDER")
    if args.from_ is None:
        if args.check:
            return _check_only(args)
        raise ConfigError("--from is required", hint="fine-tune a checkpoint file or a run: --from RUN")

    from engine.data.conversations import read_conversations
    from engine.data.tokenizer import tokenizer_from_payload
    from engine.finetune import finetune_hyperparameters, load_finetune_data, plan_steps, read_parent
    from engine.runs import Workspace

    resolved = Workspace().resolve_checkpoint(args.from_)
    parent = read_parent(resolved.path)
    overrides = _overrides(args)
    hp = finetune_hyperparameters(parent, args.data, overrides)
    print(f"parent: {resolved.description} ({'nanogpt-tui' if parent.hp else 'original modded-nanogpt'} checkpoint)")
    report = read_conversations(hp.finetune.data, max_file_mb=hp.finetune.max_file_mb)
    if not _check_report(report, hp.finetune.skip_invalid):
        if not args.check:
            print("nothing was trained: fix the data, or pass --skip-invalid to train on the valid conversations only")
        return 1
    data = load_finetune_data(hp, tokenizer_from_payload(parent.tokenizer), report)
    _print_section("tokens:", data.dataset.summary_lines())
    for warning in data.dataset.warnings:
        print(f"warning: {warning}")
    hp = plan_steps(hp, len(data.dataset.train),
                    validate_each_epoch=not any(o.startswith("run.val_every") for o in overrides))
    print(f"plan: {hp.train.num_iterations} steps = {hp.finetune.epochs} epoch(s) of {len(data.dataset.train)} rows, "
          f"{hp.train.batch_size} rows per step, {hp.finetune.optimizer} lr {hp.finetune.lr:g}")
    if args.check:
        return 1 if report.issues else 0
    name = args.name or f"{hp.preset}-ft-{time.strftime('%Y%m%d-%H%M%S')}"
    info = manager.create(hp, name, kind="finetune", nproc=args.nproc, parent=str(parent.path))
    info = manager.launch(info.name)
    print(f"run {info.name} started in {info.path}")
    if args.detach:
        print("it keeps running in the background; follow it in the app or with: nanogpt-tui runs")
        return 0
    return report_end(follow(manager, info.name))


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("finetune", help="fine-tune a checkpoint on conversations (loss on the replies)")
    parser.add_argument("--from", dest="from_", metavar="CHECKPOINT|RUN",
                        help="a .pt checkpoint (ours or modded-nanogpt's state_step*.pt), a folder or a run (its newest)")
    parser.add_argument("--data", metavar="FILE", help='conversations: .json ({"conversations": [...]}), .jsonl or a folder')
    parser.add_argument("--epochs", type=int, help="passes over the training conversations (default 3)")
    parser.add_argument("--lr", type=float, help="learning rate (default: the parent config's finetune.lr, "
                        "2e-3 for shakespeare-cpu models, 5e-5 for the speedrun ones)")
    parser.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                        help="override one setting, e.g. --set finetune.optimizer=muon (repeatable)")
    parser.add_argument("--skip-invalid", action="store_true", help="train on the valid conversations, report the rest")
    parser.add_argument("--check", action="store_true", help="only validate the data and print the summary")
    parser.add_argument("--name", help="run name (default: preset, 'ft' and time)")
    parser.add_argument("--nproc", type=int, default=1, help="processes (GPUs, or CPU workers)")
    parser.add_argument("--detach", action="store_true", help="start the run and return at once")
    parser.add_argument("--resume", metavar="RUN", help="continue a stopped fine-tune run from its newest checkpoint")
    parser.set_defaults(func=cmd_finetune)
