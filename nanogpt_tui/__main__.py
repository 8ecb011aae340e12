"""`nanogpt-tui` with no arguments opens the app; with a subcommand it runs headless."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        from nanogpt_tui.app import run_app

        run_app()
        return 0
    from nanogpt_tui.cli import run_cli

    return run_cli(args)


if __name__ == "__main__":
    sys.exit(main())
