"""`python -m engine.pretraining --run-dir D`: the entry point run folders store; the code is engine.train.pretraining."""

import logging
import sys

from engine.train.pretraining import main

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    code = main()
    from engine.train.distributed import exit_worker  # loaded already: main() imported torch

    exit_worker(code)
