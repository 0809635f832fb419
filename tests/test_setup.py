"""setup.py installs what a dom0 needs: the plugin (pointing at its Python), the library, the templates."""

import os
import shutil
import subprocess
import sys

from tests.support import plugin

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def install(tmp_path):
    source, root = str(tmp_path / "source"), str(tmp_path / "root")
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", ".deps", "build", "*.egg-info", "__pycache__", "*.pyc", ".pytest_cache"))
    subprocess.check_call([sys.executable, "setup.py", "-q", "install", "--root", root],
                          cwd=source, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
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
