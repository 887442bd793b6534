"""`python -m training.runner ...`: the runner's command line (training/runner/cli.py)."""

import sys

from training.runner.cli import main

sys.exit(main())
