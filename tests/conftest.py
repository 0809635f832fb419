"""Test-wide setup (importing the ``tests`` package puts ``plugins/`` on sys.path)."""

import sys

# The lab, its XAPI simulator and the DRBD double are Python 3 test infrastructure;
# on the dom0 Pythons only the library and the plugin are tested.
collect_ignore = []
if sys.version_info < (3, 7):
    collect_ignore += ["lab", "drbd_double", "test_drbd_double.py"]
