"""Test-wide setup (importing the ``tests`` package puts ``plugins/`` on sys.path)."""

import logging
import sys

import pytest

# The lab, its XAPI simulator and the DRBD double are Python 3 test infrastructure;
# on the dom0 Pythons only the library and the plugin are tested.
collect_ignore = []
if sys.version_info < (3, 7):
    collect_ignore += ["lab", "drbd_double", "test_drbd_double.py"]
    # Builds the RPMs and runs them on 2.7 and 3.6 itself, once.
    collect_ignore += ["test_rpm.py"]


@pytest.fixture(autouse=True)
def _fresh_iscsi_ha_logger():
    """logs.configure() gives the process-wide "iscsi-ha" logger a file handler once per
    process; a test's handler must not send the next test's log lines to its file."""
    logger = logging.getLogger("iscsi-ha")
    before = list(logger.handlers)
    yield
    for handler in logger.handlers[:]:
        if handler not in before:
            logger.removeHandler(handler)
            handler.close()
