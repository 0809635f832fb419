"""`make rpm` builds the dom0 packages: what they hold, what they need, what their
scriptlets do, and that the plugin and the commands run from an extracted copy on the
dom0 Python each is for (2.7 for the python2 build, 3.6 for the python3 one).

Collected on Python 3 only (tests/conftest.py): it drives both dom0 Pythons itself.
"""

import json
import os
import shutil
import stat
import subprocess
import sys

import pytest

from tests.support import plugin

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYENV = "/root/.pyenv/versions"
FLAVOURS = {  # flavour: (dom0 interpreter, its version, the Python that runs it here)
    "python2": ("/usr/bin/python", "2.7", os.environ.get("PY27", PYENV + "/2.7.18/bin/python")),
    "python3": ("/usr/bin/python3", "3.6", os.environ.get("PY36", PYENV + "/3.6.15/bin/python")),
}
PACKAGED = [
    "/etc/xapi.d/plugins/iscsi-ha",
    "/usr/libexec/iscsi-ha/iscsi-ha-fence-peer",
    "/usr/sbin/iscsi-ha-controller",
    "/usr/sbin/iscsi-ha",
    "/usr/sbin/iscsi-ha-status",
    "/usr/sbin/iscsi-ha-move",
    "/usr/lib/systemd/system/iscsi-ha-controller.service",
    "/usr/share/iscsi-ha/templates/iscsi-ha.conf.j2",
    "/usr/share/iscsi-ha/templates/drbd-resource.res.j2",
    "/usr/share/iscsi-ha/templates/iscsi-ha-controller.service.j2",
    "/usr/share/iscsi-ha/templates/tgtd-iscsi-ha.conf.j2",  # iscsi-ha setup's
    "/usr/share/iscsi-ha/templates/multipath-iscsi-ha.conf.j2",
    "/etc/iscsi-ha/iscsi-ha.conf",
    "/etc/logrotate.d/iscsi-ha",
]
CONFIG_FILES = ["/etc/iscsi-ha/iscsi-ha.conf", "/etc/logrotate.d/iscsi-ha"]
LIMIT = 120  # seconds: a hang guard, not a measurement


def run(argv, **options):
    process = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             universal_newlines=True, timeout=LIMIT, **options)
    return process.returncode, process.stdout, process.stderr


def query(rpm, *options):
    code, out, err = run(["rpm", "-qp"] + list(options) + [rpm])
    assert code == 0, err
    return out


def sitelib(version):
    return "/usr/lib/python%s/site-packages" % version


def make_rpm(source, out, *variables):
    code, stdout, stderr = run(["make", "--no-print-directory", "rpm",
                                "DIST=%s" % (out / "dist"), "RPM_BUILD=%s" % (out / "build")]
                               + list(variables), cwd=source)
    assert code == 0, stdout + stderr


@pytest.fixture(scope="module")
def rpms(tmp_path_factory):
    """{flavour: path} of the RPMs `make rpm` built, each built with its dom0's Python."""
    for tool in ("rpmbuild", "rpm2cpio", "cpio", "shellcheck", "logrotate"):
        assert shutil.which(tool), "%s is missing: run `make deps`" % tool
    for flavour, (_, version, python) in FLAVOURS.items():
        assert os.access(python, os.X_OK), "no Python %s at %s (set PY27/PY36)" % (version,
                                                                                  python)
    out = tmp_path_factory.mktemp("rpm")
    make_rpm(REPO, out, "PYTHON=python2 python3")
    version = subprocess.check_output([sys.executable, "setup.py", "--version"], cwd=REPO,
                                      universal_newlines=True).strip()
    built = {flavour: str(out / "dist" / ("iscsi-ha-%s-1.%s.noarch.rpm"
                                         % (version, flavour.replace("python", "py"))))
             for flavour in FLAVOURS}
    assert sorted(os.listdir(str(out / "dist"))) == sorted(os.path.basename(path)
                                                            for path in built.values())
    return built


@pytest.fixture(scope="module")
def extracted(rpms, tmp_path_factory):
    """{flavour: root} with each RPM's payload unpacked, as rpm would lay it down."""
    roots = {}
    for flavour, rpm in rpms.items():
        root = str(tmp_path_factory.mktemp("root-" + flavour))
        payload = subprocess.Popen(["rpm2cpio", rpm], stdout=subprocess.PIPE)
        code = subprocess.call(["cpio", "-idm", "--quiet"], stdin=payload.stdout, cwd=root,
                               timeout=LIMIT)
        payload.stdout.close()
        assert payload.wait(timeout=LIMIT) == 0 and code == 0
        roots[flavour] = root
    return roots


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
def test_the_package_holds_every_part_and_marks_the_config_noreplace(rpms, flavour):
    version = FLAVOURS[flavour][1]
    files = query(rpms[flavour], "-l").splitlines()
    for path in PACKAGED:
        assert path in files
    for library in ("iscsi_ha", "iscsi_ha_controller"):
        assert "%s/%s/__init__.py" % (sitelib(version), library) in files
        # Owned, so that an uninstall leaves no empty directory behind.
        assert "%s/%s" % (sitelib(version), library) in files
    assert "/usr/libexec/iscsi-ha" in files and "/etc/iscsi-ha" in files
    assert "/etc/xapi.d/plugins" not in files  # xapi-core's
    flags = dict(line.split(" ", 1)[::-1] for line in query(
        rpms[flavour], "--qf", "[%{FILEFLAGS:fflags} %{FILENAMES}\n]").splitlines())
    assert sorted(path for path, flag in flags.items() if "c" in flag) == CONFIG_FILES
    for path in CONFIG_FILES:
        assert "n" in flags[path]  # %config(noreplace): an edited copy is never replaced
    assert query(rpms[flavour], "--configfiles").split() == CONFIG_FILES


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
def test_the_package_needs_what_that_dom0_provides(rpms, flavour):
    interpreter, version, _ = FLAVOURS[flavour]
    requires = set(line.strip() for line in query(rpms[flavour], "-R").splitlines())
    names = {"python2": "python", "python3": "python3"}[flavour]
    assert {interpreter, "python(abi) = %s" % version, names + "-jinja2", names + "-six",
            "xapi-core", "logrotate"} <= requires
    assert not [line for line in requires if "dist(" in line]
    assert query(rpms[flavour], "--qf", "%{PAYLOADCOMPRESSOR}") in ("gzip", "xz")


def scriptlets(rpm):
    return dict((tag, query(rpm, "--qf", "%%{%s}" % tag.upper()))
                for tag in ("postin", "preun", "postun"))


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
def test_scriptlets_restart_on_upgrade_start_nothing_on_install_and_stop_on_removal(
        rpms, flavour, tmp_path):
    """Each scriptlet run as rpm runs it (sh, $1 = installs left after the step) with a
    systemctl that only records its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    systemctl = bin_dir / "systemctl"
    systemctl.write_text('#!/bin/sh\necho "$*" >> %s\n' % calls)
    systemctl.chmod(stat.S_IRWXU)
    scripts = scriptlets(rpms[flavour])

    def systemctl_calls(tag, count):
        script = tmp_path / tag
        script.write_text(scripts[tag])
        if calls.exists():
            calls.unlink()
        env = dict(os.environ, PATH="%s:/usr/bin:/bin" % bin_dir)
        assert run(["sh", str(script), str(count)], env=env)[0] == 0
        return calls.read_text().splitlines() if calls.exists() else []

    unit = "iscsi-ha-controller.service"
    assert systemctl_calls("postin", 1) == ["daemon-reload"]  # first install: no start
    assert systemctl_calls("postin", 2) == ["daemon-reload"]
    assert systemctl_calls("preun", 1) == []  # the old package's, during an upgrade
    assert systemctl_calls("postun", 1) == ["daemon-reload", "try-restart " + unit]
    assert systemctl_calls("preun", 0) == ["--no-reload disable " + unit, "stop " + unit]
    assert systemctl_calls("postun", 0) == ["daemon-reload"]
    for tag, text in sorted(scripts.items()):
        script = tmp_path / (tag + ".sh")
        script.write_text(text)
        code, out, err = run(["shellcheck", "--shell=sh", str(script)])
        assert code == 0, "%s scriptlet: %s%s" % (tag, out, err)


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
def test_scripts_and_unit_name_that_dom0s_interpreter(extracted, flavour):
    interpreter = FLAVOURS[flavour][0]
    root = extracted[flavour]
    for script in ("/etc/xapi.d/plugins/iscsi-ha", "/usr/libexec/iscsi-ha/iscsi-ha-fence-peer",
                   "/usr/sbin/iscsi-ha-controller", "/usr/sbin/iscsi-ha"):
        path = root + script
        with open(path) as handle:
            assert handle.readline() == "#!%s\n" % interpreter
        assert os.access(path, os.X_OK)
    for helper in ("/usr/sbin/iscsi-ha-status", "/usr/sbin/iscsi-ha-move"):
        assert os.access(root + helper, os.X_OK)
    with open(root + "/usr/lib/systemd/system/iscsi-ha-controller.service") as handle:
        assert "ExecStart=%s /usr/sbin/iscsi-ha-controller\n" % interpreter in handle.read()


def extracted_env(root, version, config=None):
    env = dict(os.environ, ISCSI_HA_TEMPLATES=root + "/usr/share/iscsi-ha/templates",
               PYTHONPATH=os.pathsep.join([plugin.XENAPIPLUGIN_DIR, root + sitelib(version)]))
    if config:
        env["ISCSI_HA_CONF"] = config
    return env


def call_plugin(root, version, python, fn, config):
    """The extracted plugin run as xapi runs it (argv[1] = the methodCall), in /."""
    code, out, err = run([python, root + "/etc/xapi.d/plugins/iscsi-ha",
                          plugin.request(fn, {})],
                         env=extracted_env(root, version, config), cwd="/")
    assert code == 0, out + err
    reply = plugin.decode(out.encode("utf-8"))
    assert reply["Status"] == "Success", reply
    return json.loads(reply["Value"])


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
def test_the_extracted_plugin_and_commands_run_on_their_dom0_python(extracted, flavour,
                                                                   tmp_path):
    _, version, python = FLAVOURS[flavour]
    root = extracted[flavour]
    # The packaged sample, with the host's paths moved into this test's directory.
    with open(root + "/etc/iscsi-ha/iscsi-ha.conf") as handle:
        sample = handle.read()
    for path in ("/var/log/iscsi-ha.log", "/var/lib/iscsi-ha", "/run/iscsi-ha"):
        assert path in sample
        sample = sample.replace(path, str(tmp_path) + path)
    config = str(tmp_path / "iscsi-ha.conf")
    with open(config, "w") as handle:
        handle.write(sample)

    answer = call_plugin(root, version, python, "version", config)
    assert answer["python"].startswith(version + ".")
    with open(os.path.join(REPO, "plugins", "iscsi_ha", "__init__.py")) as handle:
        assert '__version__ = "%s"' % answer["version"] in handle.read()

    # Not a dom0: checks fail here, but every one answers with its verdict and detail.
    answer = call_plugin(root, version, python, "check", config)
    assert answer["config"] == config and isinstance(answer["ok"], bool)
    names = [check["check"] for check in answer["checks"]]
    assert "tool tgtadm" in names and "tgtd" in names
    for check in answer["checks"]:
        assert sorted(check) == ["check", "detail", "ok"] and isinstance(check["ok"], bool)

    for command in ("iscsi-ha", "iscsi-ha-controller"):
        code, out, err = run([python, root + "/usr/sbin/" + command, "--help"],
                             env=extracted_env(root, version), cwd="/")
        assert code == 0, err
        assert out.startswith("usage: %s " % command)

    # The packaged config is the library's own sample, and the templates are found.
    code, out, err = run([python, "-m", "iscsi_ha.config", "sample"],
                         env=extracted_env(root, version), cwd="/")
    assert code == 0, err
    with open(root + "/etc/iscsi-ha/iscsi-ha.conf") as handle:
        assert out == handle.read()


def test_log_rotation_leaves_the_open_log_in_use_and_the_handlers_own_copies_alone(
        extracted, tmp_path):
    """The packaged snippet, run by logrotate on a copy of /var/log in this test's directory,
    while a writer (as the controller's log handler: append mode) keeps its file open."""
    with open(extracted["python3"] + "/etc/logrotate.d/iscsi-ha") as handle:
        snippet = handle.read()
    assert "/var/log/iscsi-ha*.log {" in snippet
    conf = tmp_path / "logrotate.conf"
    conf.write_text(snippet.replace("/var/log/", "%s/" % tmp_path))
    log = tmp_path / "iscsi-ha.log"
    (tmp_path / "iscsi-ha.log.1").write_text("the handler's own roll-over\n")
    with log.open("a") as writer:
        writer.write("before\n")
        writer.flush()
        code, out, err = run(["logrotate", "--force", "--state", str(tmp_path / "state"),
                              str(conf)])
        assert code == 0, out + err
        writer.write("after\n")
    assert log.read_text() == "after\n"
    rotated = [name for name in os.listdir(str(tmp_path)) if name.startswith("iscsi-ha.log-")]
    assert len(rotated) == 1 and (tmp_path / rotated[0]).read_text() == "before\n"
    assert (tmp_path / "iscsi-ha.log.1").read_text() == "the handler's own roll-over\n"


def test_an_upgrade_keeps_an_edited_config_and_an_uninstall_leaves_only_that(rpms, tmp_path):
    """rpm itself installs, upgrades and removes the package in a scratch root (no
    scriptlets: they are tested above; no dependencies: this is no dom0). The upgrade
    ships a changed sample: the sysadmin's edited file stays, the new one is .rpmnew."""
    source = tmp_path / "source"
    shutil.copytree(REPO, str(source), ignore=shutil.ignore_patterns(
        ".git", ".deps", "build", "dist", "*.egg-info", "__pycache__", "*.pyc"))
    with (source / "templates" / "iscsi-ha.conf.j2").open("a") as template:
        template.write("# a line the next release adds\n")
    make_rpm(str(source), tmp_path, "PYTHON=python3", "RELEASE=2")
    upgrade, = (tmp_path / "dist").iterdir()
    root = tmp_path / "root"
    root.mkdir()

    def rpm(*argv):
        code, out, err = run(["rpm", "--root", str(root), "--nodeps", "--noscripts"]
                             + list(argv))
        assert code == 0, out + err

    config = root / "etc" / "iscsi-ha" / "iscsi-ha.conf"
    rpm("-i", rpms["python3"])
    edited = config.read_text().replace("xenbr0", "xenbr1")
    config.write_text(edited)
    rpm("-U", str(upgrade))
    assert config.read_text() == edited
    assert (root / "etc" / "iscsi-ha" / "iscsi-ha.conf.rpmnew").read_text().endswith(
        "# a line the next release adds\n")
    assert "xenbr0" in (root / "etc" / "iscsi-ha" / "iscsi-ha.conf.rpmnew").read_text()
    os.unlink(str(root / "etc" / "iscsi-ha" / "iscsi-ha.conf.rpmnew"))
    rpm("-e", "iscsi-ha")
    left = sorted(os.path.relpath(os.path.join(d, name), str(root))
                  for d, dirs, files in os.walk(str(root)) for name in dirs + files
                  if "iscsi" in os.path.join(d, name))
    assert left == ["etc/iscsi-ha", "etc/iscsi-ha/iscsi-ha.conf.rpmsave"]
