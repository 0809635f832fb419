"""``python3 -m tests.drbd_double``: the double's command line (see ``cli``)."""

import sys

from .cli import main

sys.exit(main())
