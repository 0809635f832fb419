"""The ``lab`` fixture: a pool up for one test, down afterwards whatever happened."""

import pytest

from tests.lab.running import lab_command, start_lab


@pytest.fixture
def lab(tmp_path):
    running = start_lab(tmp_path)
    yield running
    running.kill_writer()
    lab_command("down", "--state", running.state)
