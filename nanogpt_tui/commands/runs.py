"""`nanogpt-tui runs`, `stop`, `resume`, `delete`: manage run directories from scripts."""

from __future__ import annotations

import argparse
import time

from engine.errors import RunError
from engine.runs import RunInfo, Workspace
from engine.text_input import ask


def _fmt(value: float | None, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


def format_run(run: RunInfo) -> str:
    started = time.strftime("%Y-%m-%d %H:%M", time.localtime(run.started_at)) if run.started_at else "-"
    line = (f"{run.name:<36} {run.kind:<9} {run.state:<9} {run.steps_label:>13} "
            f"loss {_fmt(run.last_loss)}  val {_fmt(run.last_val_loss)}  {started}")
    return "".join([line, *(f"\n  notice: {problem}" for problem in run.problems)])



def cmd_runs(args: argparse.Namespace) -> int:
    runs = Workspace().runs.list_runs()
    if not runs:
        print("no runs yet: start one with  nanogpt-tui train")
        return 0
    for run in runs:
        print(format_run(run))
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    Workspace().runs.stop(args.name)
    print(f"asked {args.name} to save a checkpoint and stop")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    manager = Workspace().runs
    if manager.get(args.name).state == "running":
        # said before asking, so nobody confirms a deletion that cannot happen
        raise RunError(f"run {args.name!r} is running", hint=f"stop it first: nanogpt-tui stop {args.name}")
    if not args.yes:
        answer = ask(f"delete run {args.name} and all its checkpoints? [y/N] ")
        if answer is None:
            raise RunError(f"run {args.name!r} was not deleted: there was no answer (input ended)",
                           hint="to delete without a question, pass --yes")
        if answer.strip().lower() not in ("y", "yes"):
            print("kept")
            return 0
    manager.delete(args.name)
    print(f"deleted {args.name}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    runs = subparsers.add_parser("runs", help="list runs and their state")
    runs.set_defaults(func=cmd_runs)
    stop = subparsers.add_parser("stop", help="stop a running run (it saves a checkpoint first)")
    stop.add_argument("name")
    stop.set_defaults(func=cmd_stop)
    delete = subparsers.add_parser("delete", help="delete a run directory")
    delete.add_argument("name")
    delete.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    delete.set_defaults(func=cmd_delete)
