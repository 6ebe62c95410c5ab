"""``python -m sim.broker``: see :mod:`sim.broker.cli`."""

import sys

from sim.broker.cli import main

sys.exit(main())
