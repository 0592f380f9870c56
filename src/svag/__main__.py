"""``python -m svag`` runs the command-line tool (so ``torchrun -m svag train ...`` works)."""

import sys

from svag.cli import entry_point

sys.exit(entry_point())
