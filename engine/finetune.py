"""`python -m engine.finetune --run-dir D`: the entry point run folders store; the code is engine.train.finetune."""

import logging
import sys

from engine.train.finetune import main

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    sys.exit(main())
