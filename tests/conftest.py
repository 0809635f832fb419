"""Test-wide setup (importing the ``tests`` package puts ``plugins/`` on sys.path)."""

import logging
import os
import sys
import tempfile

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.configuration import set_hypothesis_home_dir

from tests.support import hostile

# The lab, its XAPI simulator and the DRBD double are Python 3 test infrastructure;
# on the dom0 Pythons only the library and the plugin are tested.
collect_ignore = []
if sys.version_info < (3, 7):
    collect_ignore += ["lab", "drbd_double", "test_drbd_double.py"]
    # Builds the RPMs and runs them on 2.7 and 3.6 itself, once.
    collect_ignore += ["test_rpm.py"]

# The hostile-input tests' profiles (HYPOTHESIS_PROFILE=ci|faults): a few hundred examples
# in `make test`, over 10,000 in `make faults`. ci is derandomized, so CI fails the same
# way twice; faults explores afresh each run and prints the seed of a failure. No
# deadline: tests hold no timing thresholds. No example database in the tree.
# Hypothesis keeps caches (unicode tables, constants) even without a database: not in the tree.
set_hypothesis_home_dir(os.path.join(tempfile.gettempdir(), "iscsi-ha-hypothesis"))
for _name, _derandomize in (("ci", True), ("faults", False)):
    settings.register_profile(_name, max_examples=hostile.PROFILES[_name], deadline=None,
                              derandomize=_derandomize, database=None, print_blob=True,
                              suppress_health_check=[HealthCheck.too_slow,
                                                     HealthCheck.filter_too_much])
settings.load_profile(hostile.profile())


def pytest_sessionfinish(session):
    """``ISCSI_HA_HOSTILE_JSON=FILE``: how many hostile examples ran, for `make faults`."""
    path = os.environ.get(hostile.COUNT_VARIABLE)
    if path:
        hostile.write_count(path)


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
