"""`python -m rehearsal.simulator --tenant FILE`, the same as `python -m responders simulator`."""

import sys

from rehearsal.simulator.server import main

sys.exit(main())
