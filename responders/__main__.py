"""`python -m responders ...`: see responders/cli.py."""

import sys

from responders.cli import main

sys.exit(main())
