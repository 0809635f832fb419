"""Test-wide setup: the library under test is imported from the source tree."""

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLUGINS = os.path.join(REPO, "plugins")
if PLUGINS not in sys.path:
    sys.path.insert(0, PLUGINS)

# The lab, its XAPI simulator and the DRBD double are Python 3 test infrastructure;
# on the dom0 Pythons only the library and the plugin are tested.
collect_ignore = []
if sys.version_info < (3, 7):
    collect_ignore += ["lab", "test_drbd_double.py"]
