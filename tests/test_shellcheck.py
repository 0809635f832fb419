"""Every shell script in the repository passes shellcheck: the xe helpers dom0 runs, and the
scripts that install and run the tests. (The RPM's scriptlets: tests/test_rpm.py.)"""

import os
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKIPPED_DIRS = {".git", ".deps", "build", "dist", "__pycache__", ".pytest_cache"}
SHELLS = ("sh", "bash", "dash")


def is_shell_script(path):
    if path.endswith(".sh"):
        return True
    with open(path, "rb") as handle:
        first = handle.readline(200).decode("utf-8", "replace")
    words = first[2:].split() if first.startswith("#!") else []
    # "#!/bin/sh", "#!/usr/bin/env bash"
    return bool(words) and (os.path.basename(words[0]) in SHELLS
                            or words[0].endswith("/env") and words[1:2] and words[1] in SHELLS)


def shell_scripts():
    found = []
    for directory, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS and not d.endswith(".egg-info")]
        found += [os.path.relpath(os.path.join(directory, name), REPO) for name in files
                  if is_shell_script(os.path.join(directory, name))]
    return sorted(found)


def test_every_shell_script_passes_shellcheck():
    scripts = shell_scripts()
    # The search must find the ones we know of, or it checks nothing.
    assert set(["xe-helpers/iscsi-ha-status", "xe-helpers/iscsi-ha-move",
                "tests/install-deps.sh", "tests/pythons.sh", ".ci/run"]) <= set(scripts)
    try:
        # -x: a script is checked with what it sources (install-deps.sh: pythons.sh).
        process = subprocess.Popen(["shellcheck", "-x"] + scripts, cwd=REPO,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    except OSError as error:
        pytest.fail("cannot run shellcheck (%s): run `make deps`" % error)
    output, _ = process.communicate()
    assert process.returncode == 0, output.decode("utf-8", "replace")
