"""``python -m svag`` runs the command-line tool (so ``torchrun -m svag train ...`` works)."""

import sys

from svag.cli import main

sys.exit(main())
