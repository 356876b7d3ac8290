"""`python -m leanstep` is the `leanstep` command."""

import sys

from leanstep.cli import main

sys.exit(main())
