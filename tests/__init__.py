"""iscsi-ha's tests and test infrastructure (the lab, the DRBD double, the XAPI simulator).

The library under test is imported from the source tree, so ``python -m tests.lab``
and friends work from a fresh clone without installing anything.
"""

import os
import sys

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _part in ("controller", "plugins"):
    if os.path.join(_REPO, _part) not in sys.path:
        sys.path.insert(0, os.path.join(_REPO, _part))
