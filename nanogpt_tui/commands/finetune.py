"""`nanogpt-tui finetune`: check conversation data, then fine-tune a checkpoint on it in a new run."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from engine.data.examples import DEFAULT_EXAMPLE, EXAMPLES
from engine.errors import ConfigError
from nanogpt_tui.commands.options import number

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
    from engine.data.examples import resolve_data

    hp = apply_overrides(preset(DEFAULT_PRESET), _overrides(args))
    report = read_conversations(resolve_data(args.data), max_file_mb=hp.finetune.max_file_mb)
    usable = _check_report(report, skip_invalid=False)
    print("token counts need the model's tokenizer: add --from CHECKPOINT|RUN")
    return 0 if usable else 1


def cmd_finetune(args: argparse.Namespace) -> int:
    from engine.runs import Workspace
    from nanogpt_tui.commands.train import follow, refuse_settings_with_resume, report_end

    workspace = Workspace()
    manager = workspace.runs
    if args.resume:
        refuse_settings_with_resume(args.resume, {"--from": args.from_, "--data": args.data, "--epochs": args.epochs,
                                                  "--lr": args.lr, "--set": args.set, "--name": args.name,
                                                  "--skip-invalid": args.skip_invalid})
        info = manager.resume(args.resume, kind="finetune", rerun_finished=args.rerun)
        print(f"run {info.name} resumed in {info.path}")
        return 0 if args.detach else report_end(follow(manager, info.name))
    if not args.data:
        raise ConfigError("--data is required", hint="give the conversations: --data FILE.json|FILE.jsonl|FOLDER, "
                          f"or the bundled example: --data {DEFAULT_EXAMPLE}")
    if args.from_ is None:
        if args.check:
            return _check_only(args)
        raise ConfigError("--from is required", hint="fine-tune a checkpoint file or a run: --from RUN")

    from engine.data.conversations import first_few

    plan = workspace.plan_finetune(args.from_, args.data, _overrides(args), name=args.name, nproc=args.nproc)
    kind = "original modded-nanogpt" if plan.original else "nanogpt-tui"
    print(f"parent: {plan.parent.description} ({kind} checkpoint)")
    if not _check_report(plan.report, plan.hp.finetune.skip_invalid) or plan.data is None:
        if not args.check:
            print("nothing was trained: fix the data, or pass --skip-invalid to train on the valid conversations only")
        return 1
    _print_section("tokens:", plan.data.dataset.summary_lines())
    warnings = plan.data.dataset.warnings
    if warnings:
        print(f"{len(warnings):,} warning(s):")
        for warning in first_few(warnings):
            print(f"  {warning}")
    print(f"plan: {plan.summary()}")
    if args.check:
        return 1 if plan.report.issues else 0
    info = workspace.launch_finetune(plan)
    print(f"run {info.name} started in {info.path}")
    if args.detach:
        print("it keeps running in the background; follow it in the app or with: nanogpt-tui runs")
        return 0
    return report_end(follow(manager, info.name))


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("finetune", help="fine-tune a checkpoint on conversations (loss on the replies)")
    parser.add_argument("--from", dest="from_", metavar="CHECKPOINT|RUN",
                        help="a .pt checkpoint (ours or modded-nanogpt's state_step*.pt), a folder or a run (its newest)")
    parser.add_argument("--data", metavar="FILE|EXAMPLE",
                        help='conversations: .json ({"conversations": [...]}), .jsonl, a folder, or a bundled example: '
                        + ", ".join(EXAMPLES))
    parser.add_argument("--epochs", type=number("finetune.epochs"), help="passes over the training conversations (default 3)")
    parser.add_argument("--lr", type=number("finetune.lr"), help="learning rate (default: the parent config's finetune.lr, "
                        "2e-3 for shakespeare-cpu models, 5e-5 for the speedrun ones)")
    parser.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                        help="override one setting, e.g. --set finetune.optimizer=muon (repeatable)")
    parser.add_argument("--skip-invalid", action="store_true", help="train on the valid conversations, report the rest")
    parser.add_argument("--check", action="store_true", help="only validate the data and print the summary")
    parser.add_argument("--name", help="run name (default: the parent run's name, 'ft' and the time)")
    parser.add_argument("--nproc", type=number("nproc"), default=1, help="processes (GPUs, or CPU workers)")
    parser.add_argument("--detach", action="store_true", help="start the run and return at once")
    parser.add_argument("--resume", metavar="RUN", help="continue a stopped fine-tune run from its newest checkpoint")
    parser.add_argument("--rerun", action="store_true", help="with --resume: also a finished run (trains its last "
                        "steps again and replaces its final checkpoint)")
    parser.set_defaults(func=cmd_finetune)
