"""`python -m responders.simulator --tenant FILE`, the same as `python -m responders simulator`."""

import sys

from responders.simulator.server import main

sys.exit(main())
