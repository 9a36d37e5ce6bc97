"""``python -m torchawp.cli`` (what ``torchrun -m torchawp.cli train ...`` runs)."""

import sys

from . import main

sys.exit(main())
