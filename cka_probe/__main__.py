"""``python -m cka_probe`` (also what ``torchrun -m cka_probe`` runs)."""

import sys

from cka_probe.cli import main

sys.exit(main())
