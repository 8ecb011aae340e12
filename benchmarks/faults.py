"""Fault benchmark: SIGKILL a tiny CPU run at random moments, resume each time, check every checkpoint.

    python benchmarks/faults.py            # 10 kills
    python benchmarks/faults.py --quick    # 3 kills

Last line: `kills=… resumed_ok=… corrupt_checkpoints=… max_stop_s=…` (target: resumed_ok == kills,
corrupt_checkpoints=0).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="3 kills")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    kills = 3 if args.quick else args.kills
    with tempfile.TemporaryDirectory() as home:
        os.environ["NANOGPT_TUI_HOME"] = home
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        from tests.reliability.kill_loop import kill_loop

        report = kill_loop(Path(home), kills=kills, seed=args.seed)
    for note in report.notes:
        print(f"note: {note}")
    print(f"kills={report.kills} resumed_ok={report.resumed_ok} corrupt_checkpoints={report.corrupt_checkpoints} "
          f"max_stop_s={report.max_stop_s:.2f}")


if __name__ == "__main__":
    main()
