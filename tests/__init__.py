"""iscsi-ha's tests and test infrastructure (the lab, the DRBD double, the XAPI simulator).

The library under test is imported from the source tree, so ``python -m tests.lab``
and friends work from a fresh clone without installing anything.
"""

import os
import sys

_PLUGINS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "plugins")
if _PLUGINS not in sys.path:
    sys.path.insert(0, _PLUGINS)
