"""setup.py installs what a dom0 needs: the plugin and the controller (each script pointing
at its Python), the libraries, the templates, the controller's systemd unit."""

import os
import shutil
import subprocess
import sys
import threading

import pytest

from tests.support import plugin

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_LIMIT = 120.0  # seconds: a hang guard, not a measurement
UNIT = os.path.join("usr", "lib", "systemd", "system", "iscsi-ha-controller.service")


def run(argv, **options):
    """``(exit status, stdout, stderr)`` of ``argv``, killed after RUN_LIMIT (on 2.7 too)."""
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               **options)
    timer = threading.Timer(RUN_LIMIT, process.kill)
    timer.start()
    try:
        stdout, stderr = process.communicate()
    finally:
        timer.cancel()
    return process.returncode, stdout.decode("utf-8"), stderr.decode("utf-8")


def install(tmp_path, config=None):
    """The install into a fresh root, or one holding ``config`` as its iscsi-ha.conf."""
    source, root = str(tmp_path / "source"), str(tmp_path / "root")
    if config is not None:
        os.makedirs(os.path.join(root, "etc", "iscsi-ha"))
        with open(os.path.join(root, "etc", "iscsi-ha", "iscsi-ha.conf"), "w") as handle:
            handle.write(config)
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", ".deps", "build", "*.egg-info", "__pycache__", "*.pyc", ".pytest_cache"))
    status, stdout, stderr = run([sys.executable, "setup.py", "-q", "install", "--root", root],
                                 cwd=source)
    assert status == 0, stdout + stderr
    return root


def find(root, name):
    for directory, _, files in os.walk(root):
        if name in files:
            return os.path.join(directory, name)
    raise AssertionError("%s was not installed under %s" % (name, root))


def test_install_puts_the_plugin_library_and_templates_in_place(tmp_path):
    root = install(tmp_path)
    plugin_file = os.path.join(root, "etc", "xapi.d", "plugins", "iscsi-ha")
    with open(plugin_file) as handle:
        assert handle.readline() == "#!%s\n" % sys.executable
    assert os.access(plugin_file, os.X_OK)
    library = os.path.dirname(find(root, "actions.py"))
    templates = os.path.dirname(find(root, "iscsi-ha.conf.j2"))
    assert os.path.exists(os.path.join(templates, "drbd-resource.res.j2"))

    # The installed plugin runs from the installed library, as on dom0.
    env = dict(os.environ, ISCSI_HA_TEMPLATES=templates, PYTHONPATH=os.pathsep.join(
        [plugin.XENAPIPLUGIN_DIR, os.path.dirname(library)]))
    process = subprocess.Popen([plugin_file, plugin.request("version", {})], env=env,
                               cwd=str(tmp_path), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    stdout, _ = process.communicate()
    reply = plugin.decode(stdout)
    assert reply["Status"] == "Success"
    sample = subprocess.check_output([sys.executable, "-m", "iscsi_ha.config", "sample"],
                                     env=env, cwd=str(tmp_path)).decode("utf-8")
    assert "[resource iscsi1]" in sample


def test_install_puts_the_fence_peer_handler_where_the_drbd_files_name_it(tmp_path):
    from iscsi_ha import drbdconf
    root = install(tmp_path)
    handler = os.path.join(root, drbdconf.FENCE_PEER.lstrip("/"))
    with open(handler) as handle:
        assert handle.readline() == "#!%s\n" % sys.executable
    assert os.access(handler, os.X_OK)
    library = os.path.dirname(find(root, "fence.py"))
    # Started by hand, without DRBD's environment, it refuses (exit 1 = DRBD changes nothing).
    env = dict(os.environ, PYTHONPATH=os.path.dirname(library))
    env.pop("DRBD_RESOURCE", None)
    process = subprocess.Popen([handler], env=env, cwd=str(tmp_path), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    _, stderr = process.communicate()
    assert process.returncode == 1
    assert b"DRBD_RESOURCE is not set" in stderr


def test_install_puts_the_controller_and_the_cli_on_roots_path_with_their_unit(tmp_path):
    root = install(tmp_path)
    library = os.path.dirname(os.path.dirname(find(root, "alerts.py")))
    env = dict(os.environ, PYTHONPATH=library)
    for name in ("iscsi-ha-controller", "iscsi-ha"):
        script = os.path.join(root, "usr", "sbin", name)
        with open(script) as handle:
            assert handle.readline() == "#!%s\n" % sys.executable
        assert os.access(script, os.X_OK)
        # Started by its first line, from the installed libraries.
        status, stdout, stderr = run([script, "--help"], env=env, cwd=str(tmp_path))
        assert status == 0, stderr
        assert stdout.startswith("usage: %s " % name)
    with open(os.path.join(root, UNIT)) as handle:
        unit = handle.read().splitlines()
    command = [line for line in unit if line.startswith("ExecStart=")]
    assert command == ["ExecStart=%s /usr/sbin/iscsi-ha-controller" % sys.executable]
    assert "Restart=always" in unit and "After=xapi.service" in unit
    templates = os.path.dirname(find(root, "iscsi-ha.conf.j2"))
    assert os.path.exists(os.path.join(templates, "iscsi-ha-controller.service.j2"))


def test_install_adds_the_xe_helpers_and_log_rotation_and_keeps_an_existing_config(tmp_path):
    root = install(tmp_path, config="# this host's config\n")
    with open(os.path.join(root, "etc", "iscsi-ha", "iscsi-ha.conf")) as handle:
        assert handle.read() == "# this host's config\n"
    with open(os.path.join(root, "etc", "logrotate.d", "iscsi-ha")) as handle:
        assert "/var/log/iscsi-ha*.log {" in handle.read()
    for helper in ("iscsi-ha-status", "iscsi-ha-move"):
        assert os.access(os.path.join(root, "usr", "sbin", helper), os.X_OK)


@pytest.mark.skipif(not any(os.access(os.path.join(d, "systemd-analyze"), os.X_OK)
                            for d in os.environ.get("PATH", "").split(os.pathsep)),
                    reason="needs systemd-analyze")
def test_the_installed_unit_is_one_systemd_reads_without_complaint(tmp_path):
    root = install(tmp_path)
    status, stdout, stderr = run(["systemd-analyze", "verify", os.path.join(root, UNIT)])
    assert (status, stdout, stderr) == (0, "", "")
