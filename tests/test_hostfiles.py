"""``iscsi-ha setup``'s files: what is rendered from a host's config, what the plugin's
install-files accepts, writes and keeps, the config backup's rules, and the tgtd
drop-in's stop run against a real tgtd with a logged-in initiator."""

import io
import json
import os
import re
import shutil
import sys
import tempfile
import time

import pytest
import six

from iscsi_ha import arguments, commands, config as config_module, install, lvmfilter
from iscsi_ha.errors import BadArgument, BadConfig
from iscsi_ha_controller import configstore, hostfiles
from tests.support import tgtd
from tests.test_drbdconf import parse as drbdadm_dump
from tests.test_target import (CLIENT_IQN, IQN, client, daemon, disk, export, host,  # noqa
                               lab, lun_url, scratch, start_logged_in_client, target,
                               wait_for_sessions)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOSTS = "xcp-a=198.51.100.1 xcp-b=198.51.100.2"
PYTHON = "/usr/bin/python3"


@pytest.fixture
def root():
    path = tempfile.mkdtemp(prefix="iha-hostfiles-")
    yield path
    shutil.rmtree(path)


def sample(root, **overrides):
    values = dict(replication_hosts=HOSTS, install_root=os.path.join(root, "sysroot"),
                  state_dir=os.path.join(root, "state"), run_dir=os.path.join(root, "run"),
                  lvm_conf=os.path.join(root, "lvm.conf"), drbd_version="9",
                  resources=[{"name": "iscsi1", "device": "/dev/drbd1", "lun": 1,
                              "scsi_id": "1fa0c0de0001", "scsi_sn": "IHA-ISCSI1",
                              "disk": "/dev/sdb"}])
    values.update(overrides)
    return config_module.render_sample(**values)


def load(root, **overrides):
    path = os.path.join(root, "iscsi-ha.conf")
    with io.open(path, "w", encoding="utf-8") as handle:
        handle.write(six.text_type(sample(root, **overrides)))
    with io.open(os.path.join(root, "lvm.conf"), "w", encoding="utf-8") as handle:
        handle.write(u'devices {\n    global_filter = [ "r|^/dev/drbd1$|", "r|^/dev/sdb$|", '
                     u'"a|.*|" ]\n}\n')
    return config_module.load(path)


def files_arg(files):
    return arguments.parse("install-files", {"files": hostfiles.wire(files)},
                           arguments.SPECS["install-files"])["files"]


# -- rendering -------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["9", "8.4"])
@pytest.mark.parametrize("hostname", ["xcp-a", "xcp-b"])
def test_the_rendered_drbd_file_passes_drbdadm_dump(root, version, hostname):
    config = load(root, drbd_version="auto")
    files = hostfiles.render(config, version, PYTHON)
    assert [(f["kind"], f["name"]) for f in files] == [
        ("drbd-resource", "iscsi1"), ("tgtd-dropin", None), ("multipath-blacklist", None),
        ("controller-unit", None)]
    text = files[0]["content"]
    result = drbdadm_dump(root, text, version, hostname, resource="iscsi1")
    assert result.returncode == 0, result.stderr
    assert "fence-peer" in result.stdout and drbdconf_handler() in result.stdout
    # The port: 7788 + the minor, unless [resource NAME] port says otherwise.
    assert "198.51.100.1:7789" in result.stdout


def drbdconf_handler():
    from iscsi_ha import drbdconf
    return drbdconf.FENCE_PEER


def test_the_other_files_name_the_hosts_tools_and_python(root):
    config = load(root, tgt_control_port=7, resources=[{
        "name": "iscsi1", "device": "/dev/drbd1", "lun": 1, "scsi_id": "1fa0c0de0001",
        "scsi_sn": "IHA-ISCSI1", "disk": "/dev/sdb", "port": 7900}])
    files = dict((f["kind"], f["content"]) for f in hostfiles.render(config, None, PYTHON))
    assert "198.51.100.2:7900" in files["drbd-resource"]
    stops = [line for line in files["tgtd-dropin"].splitlines() if line.startswith("ExecStop")]
    assert stops[0] == "ExecStop="
    assert all(re.match(r"ExecStop=-?/\S+/tgtadm -C 7 ", line) for line in stops[1:])
    assert "--tid 1 --force" in stops[3]
    assert 'devnode "^drbd[0-9]+"' in files["multipath-blacklist"]
    assert "ExecStart=%s /usr/sbin/iscsi-ha-controller" % PYTHON in files["controller-unit"]


def test_missing_settings_are_named_with_their_fix(root):
    config = load(root, replication_hosts="", drbd_version="auto", resources=[{
        "name": "iscsi1", "device": "/dev/mapper/x", "lun": 1, "scsi_id": "1fa0c0de0001",
        "scsi_sn": "IHA-ISCSI1"}])
    with pytest.raises(BadConfig) as caught:
        hostfiles.render(config, None, PYTHON)
    joined = "\n".join(caught.value.details)
    assert "[replication] drbd_version: auto, and the host could not tell" in joined
    assert "[replication] hosts: empty; set both hosts' NAME=ADDRESS" in joined
    assert "[resource iscsi1] device: /dev/mapper/x is not a DRBD device" in joined
    assert "[resource iscsi1] disk: missing" in joined


def test_drbd_refusals_name_the_config_fields(root):
    config = load(root, replication_hosts="all=198.51.100.1 xcp-b=198.51.100.2")
    with pytest.raises(BadConfig) as caught:
        hostfiles.render(config, "9", PYTHON)
    assert caught.value.details == [
        "[resource iscsi1] and [replication] hosts: hosts[0] hostname: 'all' is a word "
        "DRBD's configuration reserves; choose another name"]


@pytest.mark.parametrize("value, why", [
    ("xcp-a=198.51.100.1", "names 1 hosts"),
    ("xcp-a 198.51.100.2", "'xcp-a' is not NAME=ADDRESS"),
    ("xcp-a=198.51.100.1 xcp-b=198.51.100.300", "'xcp-b=198.51.100.300' is not NAME=ADDRESS"),
])
def test_bad_replication_hosts_are_refused_by_the_config(root, value, why):
    with pytest.raises(BadConfig) as caught:
        config_module.parse(sample(root, replication_hosts=value))
    assert why in caught.value.message
    assert "[replication] hosts" in caught.value.message


# -- what install-files accepts ------------------------------------------------------

@pytest.mark.parametrize("value, why", [
    ("nope", "not JSON"),
    ('{"kind": "config"}', "not a list"),
    ('[{"kind": "sshd", "content": ""}]', 'kind "sshd" is unknown'),
    ('[{"kind": "drbd-resource", "content": ""}]', "needs a name"),
    ('[{"kind": "tgtd-dropin", "name": "x", "content": ""}]', "takes no name"),
    ('[{"kind": "drbd-resource", "name": "../../etc/passwd", "content": ""}]',
     "is not a DRBD resource name"),
    ('[{"kind": "tgtd-dropin", "content": "a\\u0000b"}]', "control characters"),
    ('[{"kind": "tgtd-dropin", "content": 5}]', "content is not text"),
    ('[{"kind": "tgtd-dropin", "content": ""}, {"kind": "tgtd-dropin", "content": ""}]',
     "tgtd-dropin is given twice"),
    ('[{"kind": "tgtd-dropin", "content": "", "path": "/etc/shadow"}]',
     "with kind, content and name only"),
])
def test_install_files_refuses_anything_but_known_files(value, why):
    with pytest.raises(BadArgument) as caught:
        arguments.parse("install-files", {"files": value}, arguments.SPECS["install-files"])
    assert caught.value.details == ["files"]
    assert why in caught.value.message


def test_install_files_bounds_each_file():
    content = "x" * (install.MAX_BYTES + 1)
    with pytest.raises(BadArgument) as caught:
        files_arg([{"kind": "tgtd-dropin", "name": None, "content": content}])
    assert "larger than 65536 bytes" in caught.value.message


def test_files_the_config_does_not_know_are_refused_before_any_write(root):
    config = load(root)
    with pytest.raises(BadArgument) as caught:
        install.install(config, files_arg([
            {"kind": "tgtd-dropin", "name": None, "content": "[Service]\n"},
            {"kind": "drbd-resource", "name": "other", "content": "resource other {\n}\n"},
            {"kind": "config", "name": None, "content": "[target]\n"}]), dry_run=False)
    message = caught.value.message
    assert "drbd-resource other is not a [resource NAME]" in message
    assert "[vip] address: missing" in message
    assert message.endswith("nothing was written")
    assert not os.path.exists(os.path.join(root, "sysroot"))


# -- writing --------------------------------------------------------------------------

def test_install_writes_atomically_keeps_what_it_replaced_and_repeats_as_unchanged(root):
    config = load(root)
    files = files_arg(hostfiles.render(config, None, PYTHON))
    dropin = os.path.join(root, "sysroot", "etc", "systemd", "system", "tgtd.service.d",
                          "iscsi-ha.conf")
    os.makedirs(os.path.dirname(dropin))
    with open(dropin, "w") as handle:
        handle.write("[Service]\nTimeoutStopSec=2\n")

    preview = install.install(config, files, dry_run=True)
    assert [(os.path.relpath(f["path"], os.path.join(root, "sysroot")), f["outcome"])
            for f in preview["files"]] == [
        ("etc/drbd.d/iscsi1.res", "would create"),
        ("etc/systemd/system/tgtd.service.d/iscsi-ha.conf", "would change"),
        ("etc/multipath/conf.d/iscsi-ha.conf", "would create"),
        ("usr/lib/systemd/system/iscsi-ha-controller.service", "would create")]
    assert "\n-TimeoutStopSec=2\n" in preview["files"][1]["diff"]
    assert "\n+TimeoutStopSec=10\n" in preview["files"][1]["diff"]
    assert preview["files"][0]["diff"].startswith("--- /dev/null\n+++ %s\n"
                                                  % preview["files"][0]["path"])
    assert preview["changed"] is False
    assert open(dropin).read() == "[Service]\nTimeoutStopSec=2\n"
    assert preview["lvm_filter"]["ok"] is True

    done = install.install(config, files, dry_run=False)
    assert [f["outcome"] for f in done["files"]] == ["created", "changed", "created",
                                                     "created"]
    assert done["changed"] is True
    assert open(dropin).read() == files[1]["content"]
    kept = done["files"][1]["backup"]
    assert kept == os.path.join(root, "state", "replaced", dropin.lstrip("/"))
    assert open(kept).read() == "[Service]\nTimeoutStopSec=2\n"
    assert not [name for name in os.listdir(os.path.dirname(dropin)) if "new" in name]

    again = install.install(config, files, dry_run=False)
    assert [f["outcome"] for f in again["files"]] == ["unchanged"] * 4
    assert again["changed"] is False
    assert again["summary"] == "install-files: nothing to do, every file is in place"


def test_a_config_behind_a_symlink_is_written_at_its_target(root, monkeypatch):
    config = load(root)
    link = os.path.join(root, "link.conf")
    os.symlink(config.path, link)
    monkeypatch.setenv(config_module.PATH_VARIABLE, link)
    text = sample(root, probe_ms=60)
    done = install.install(config, files_arg([{"kind": "config", "name": None,
                                               "content": text}]), dry_run=False)
    assert done["files"][0]["path"] == os.path.realpath(config.path)
    assert os.path.islink(link)
    assert config_module.load(link).probe_ms == 60


def test_the_lvm_filter_is_reported_with_the_line_that_fixes_it(root):
    config = load(root)
    with open(config.lvm_conf, "w") as handle:
        handle.write('devices {\n    # r|^/dev/sdb$|\n    global_filter = [ "r|^/dev/sdc$|" ]\n}\n')
    report = install.lvm_filter(config)
    assert report["ok"] is False
    assert report["scanned"] == ["/dev/drbd1", "/dev/sdb"]
    assert report["line"] == ('global_filter = [ "r|^/dev/drbd1$|", "r|^/dev/sdb$|", '
                              '"r|^/dev/sdc$|" ]')
    fixed = 'devices {\n    %s\n}\n' % report["line"]
    assert not [path for path in report["scanned"] if lvmfilter.scanned(fixed, path)]


def test_reject_patterns_match_only_their_path():
    pattern = lvmfilter.reject_pattern("/dev/disk/by-id/scsi-3600.1")
    assert pattern == '"r|^/dev/disk/by-id/scsi-3600[.]1$|"'
    conf = "devices {\n    global_filter = [ %s ]\n}\n" % pattern
    assert not lvmfilter.scanned(conf, "/dev/disk/by-id/scsi-3600.1")
    assert lvmfilter.scanned(conf, "/dev/disk/by-id/scsi-3600x1")
    assert lvmfilter.reject_pattern('/dev/we"ird') is None


# -- the config backup -----------------------------------------------------------------

def test_a_backup_refuses_a_config_holding_a_password(root):
    secret = os.path.join(root, "xapi-password")
    with open(secret, "w") as handle:
        handle.write("s3cret-pw\n")
    text = sample(root, xapi_password_file=secret)
    config = config_module.parse(text, "iscsi-ha.conf")
    assert configstore.check(text, config) is None
    pasted = text + "# the password is s3cret-pw\n"
    assert "holds the password of [xapi] password_file" in configstore.check(pasted, config)
    big = text + "#" * configstore.MAX_BYTES + "\n"
    assert "more than the 32768 the pool database takes" in configstore.check(big, config)


def test_status_says_which_hosts_differ_from_the_backup(root):
    config = config_module.parse(sample(root))

    class View(object):
        def __init__(self, name, digest):
            self.name, self.answered = name, digest is not None
            self.status = {"config_digest": digest}

    backup = configstore.stored({configstore.KEY: json.dumps(configstore.record(
        "text", config, "xcp-a", now=0))})
    compared = configstore.comparison(backup, [View("xcp-a", config.digest()),
                                               View("xcp-b", "0123"), View("xcp-c", None)])
    assert compared["matches"] == {"xcp-a": True, "xcp-b": False, "xcp-c": None}
    assert configstore.line(compared, lambda at: "then") == (
        "taken then from xcp-a (digest %s): xcp-b DIFFERS (`iscsi-ha config restore HOST`, "
        "or back up again); xcp-c unknown (no status)" % config.digest())
    assert configstore.comparison(configstore.stored({configstore.KEY: "junk"}), []) is None


# -- the tgtd drop-in against a real tgtd ------------------------------------------------

def test_the_dropins_stop_ends_tgtd_with_a_logged_in_initiator(request, root, daemon, target,
                                                              client, disk):
    export(target, disk)
    start_logged_in_client(request, client, lun_url())
    wait_for_sessions(target, IQN, 1)
    # The stop the tgt units ship with (without the drop-in) leaves tgtd running: tgt-admin
    # keeps a target in use, and tgtd refuses to delete a system with targets.
    port = str(daemon.control_port)
    daemon.namespace.run(["tgt-admin", "-C", port, "--update", "ALL", "-c", "/dev/null"],
                         check=False)
    assert daemon.namespace.run(["tgtadm", "-C", port, "--op", "delete", "--mode", "system"],
                                check=False).returncode != 0
    assert daemon.running() and target.find(IQN) is not None

    config = load(root, tgt_control_port=daemon.control_port)
    dropin = [f for f in hostfiles.render(config, "9", PYTHON)
              if f["kind"] == "tgtd-dropin"][0]["content"]
    stops = [line[len("ExecStop="):] for line in dropin.splitlines()
             if line.startswith("ExecStop=")]
    assert stops[0] == ""  # resets the unit's own stop commands
    for command in stops[1:]:
        # systemd's "-" prefix: a failure does not fail the stop.
        argv = command.lstrip("-").split()
        result = daemon.namespace.run(argv, check=False)
        assert command.startswith("-") or result.returncode == 0, result.stderr
    deadline = time.time() + 10
    while daemon.running() and time.time() < deadline:
        time.sleep(0.05)
    assert not daemon.running(), daemon.log()
    assert daemon.stop() == "exited"


# -- the commands, against fake hosts whose plugin installs for real ---------------------

class Pool(object):
    """test_cli's fake pool, whose hosts' install-files is the real one on their roots."""

    def __init__(self, root, lvm_ok=("hostA", "hostB")):
        from tests.test_cli import World
        self.world = World()
        self.configs = {}
        for host in ("hostA", "hostB"):
            directory = os.path.join(root, host)
            os.makedirs(directory)
            config = load(directory)
            if host not in lvm_ok:
                with open(config.lvm_conf, "w") as handle:
                    handle.write("devices {\n}\n")
            self.configs[host] = config
        self.world.plugin = self.plugin
        self.installs = []

    def plugin(self, host, fn, args):
        self.world.events.append(("plugin", host, fn, args))
        if (host, fn) in self.world.errors:
            return None, self.world.errors[(host, fn)]
        if fn == "status":
            return dict(self.world.statuses[host],
                        config_digest=self.configs[host].digest()), None
        assert fn == "install-files"
        values = arguments.parse(fn, args, arguments.SPECS[fn])
        self.installs.append((host, values["dry_run"], [f["kind"] for f in values["files"]]))
        # As on the host: its plugin's config path (the env var, here) is its own.
        before = os.environ.get(config_module.PATH_VARIABLE)
        os.environ[config_module.PATH_VARIABLE] = self.configs[host].path
        try:
            result = install.install(self.configs[host], values["files"], values["dry_run"])
        finally:
            if before is None:
                del os.environ[config_module.PATH_VARIABLE]
            else:
                os.environ[config_module.PATH_VARIABLE] = before
        result.update(config={"path": self.configs[host].path,
                              "text": open(self.configs[host].path).read()},
                      drbd_version="9", python=PYTHON)
        return json.loads(json.dumps(result)), None

    def run(self, *argv):
        from tests.test_cli import run
        return run(self.world, self.configs["hostA"].path, *argv)


def test_setup_checks_every_host_before_writing_and_then_installs_each(root):
    pool = Pool(root)
    code, out, err = pool.run("setup", "--dry-run", "--json")
    assert code == 0, err
    shown = json.loads(out)
    assert [[f["outcome"] for f in h["files"]] for h in shown["hosts"]] == [
        ["would create"] * 4] * 2
    assert not os.path.exists(os.path.join(root, "hostA", "sysroot"))

    del pool.installs[:]
    code, out, err = pool.run("setup")
    assert code == 0, err
    assert [(host, dry_run) for host, dry_run, kinds in pool.installs] == [
        ("hostA", True), ("hostB", True), ("hostA", True), ("hostB", True),
        ("hostA", False), ("hostB", False)]
    assert "hostB  tgtd-dropin" in out and "created" in out
    code, out, err = pool.run("setup")
    assert code == 0, err
    assert "nothing changed: every file is in place on every host" in out


def test_setup_names_the_lvm_line_to_add_and_a_plugin_without_the_fn(root):
    pool = Pool(root, lvm_ok=("hostA",))
    code, out, err = pool.run("setup", "--json")
    assert code == 1
    error = json.loads(out)["error"]  # one JSON object, the result inside the error
    assert error["code"] == hostfiles.LVM_FILTER_NEEDED
    assert error["setup"]["changed"] is True
    assert ('hostB: LVM would scan /dev/drbd1 and /dev/sdb: in the devices section of %s '
            'set global_filter = [ "r|^/dev/drbd1$|", "r|^/dev/sdb$|", "a|.*|" ]'
            % pool.configs["hostB"].lvm_conf) in err

    pool = Pool(os.path.join(root, "again"))
    pool.world.errors[("hostB", "install-files")] = ["UNKNOWN_XENAPI_PLUGIN_FUNCTION",
                                                      "install-files"]
    code, out, err = pool.run("setup")
    assert code == 1
    assert ("hostB could not read its config and facts: install-files (a plugin without "
            "fn=install-files: install this iscsi-ha version on every host); nothing was "
            "installed") in err
    assert not os.path.exists(os.path.join(root, "again", "hostA", "sysroot"))


def test_setup_refuses_hosts_whose_drbd_files_would_not_connect(root):
    pool = Pool(root)
    path = pool.configs["hostB"].path
    text = open(path).read().replace("xcp-b=198.51.100.2", "xcp-b=198.51.100.3")
    with open(path, "w") as handle:
        handle.write(text)
    pool.configs["hostB"] = config_module.load(path)
    code, out, err = pool.run("setup")
    assert code == 2
    assert ("ISCSI_HA_BAD_CONFIG: nothing was installed: the DRBD resources of hostA and "
            "hostB would not connect: make [replication] hosts") in err
    assert all(dry_run for _, dry_run, _ in pool.installs)


def test_config_backup_restore_and_status(root):
    pool = Pool(root)
    code, out, err = pool.run("config", "restore", "hostB")
    assert code == 1 and configstore.NO_BACKUP in err
    code, out, err = pool.run("config", "backup", "--json")
    assert code == 0, err
    stored = json.loads(pool.world.record["other_config"][configstore.KEY])
    assert stored["text"] == open(pool.configs["hostA"].path).read()
    code, out, err = pool.run("status", "--json")
    assert json.loads(out)["config_backup"]["matches"] == {"hostA": True, "hostB": True}

    code, out, err = pool.run("config", "restore", "hostB", "--dry-run", "--json")
    assert code == 0, err
    restored = json.loads(out)["restore"]
    assert restored["outcome"] == "would change"  # hostB's own host-local paths differ
    assert restored["path"] == os.path.realpath(pool.configs["hostB"].path)
    assert pool.installs[-1] == ("hostB", True, ["config"])
    code, out, err = pool.run("config", "restore", "hostB")
    assert code == 0, err
    assert "hostB: changed %s (the backup taken " % restored["path"] in out
    assert open(pool.configs["hostB"].path).read() == stored["text"]


def test_systemd_reads_the_dropin_and_the_unit_without_a_complaint(root):
    """systemd-analyze verify loads a unit with its drop-ins, as systemd would."""
    config = load(root)
    files = dict((f["kind"], f["content"]) for f in hostfiles.render(
        config, "9", sys.executable))
    units = os.path.join(root, "units")
    os.makedirs(os.path.join(units, "tgtd.service.d"))
    with open(os.path.join(units, "tgtd.service"), "w") as handle:
        # The shape of the tgt units: the drop-in must replace their ExecStop lines.
        handle.write("[Unit]\nDescription=tgtd\n[Service]\nExecStart=%s -f\nExecStop=%s "
                     "--op delete --mode system\n" % (commands.find_tool("tgtd"),
                                                     commands.find_tool("tgtadm")))
    controller = os.path.join(REPO, "controller", "iscsi-ha-controller")
    for path, content in (
            (os.path.join(units, "tgtd.service.d", "iscsi-ha.conf"), files["tgtd-dropin"]),
            (os.path.join(units, "iscsi-ha-controller.service"),
             files["controller-unit"].replace(hostfiles.CONTROLLER, controller))):
        with open(path, "w") as handle:
            handle.write(content)
    for unit in ("tgtd.service", "iscsi-ha-controller.service"):
        result = commands.run(["systemd-analyze", "verify", os.path.join(units, unit)],
                              timeout=60, check=False)
        assert (result.returncode, result.stdout + result.stderr) == (0, ""), unit
