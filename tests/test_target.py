"""iscsi_ha.target: parsing recorded tgtadm output, and driving a real tgtd in a lab namespace.

The integration tests build a host namespace (192.0.2.11, running tgtd) and a
client namespace (192.0.2.50) joined by a veth pair, and look at the target
the way an initiator does: with libiscsi's iscsi-ls / iscsi-inq / iscsi-perf.
"""

import json
import os
import shutil
import subprocess
import tempfile
import time

import pytest

from iscsi_ha import commands
from iscsi_ha.errors import BadArgument, TargetDaemonDown, TargetError, ToolMissing
from iscsi_ha.target import TgtTarget, parse_show
from tests.support import netns, tgtd

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "tgt")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ISCSI_IO = os.path.join(REPO, "tests", "lab", "iscsi_io.py")

HOST_CIDR, HOST = "192.0.2.11/24", "192.0.2.11"
CLIENT_CIDR, CLIENT = "192.0.2.50/24", "192.0.2.50"
IQN = "iqn.2026-01.example:sr1"
CLIENT_IQN = "iqn.2026-01.example:client1"
IDENTITY = {"scsi_id": "36000c0ffee0001", "scsi_sn": "ihasn0001", "vendor_id": "XENHA",
            "product_id": "DRBDDISK"}
DISK_BYTES = 16 * 1024 * 1024
# How long a test waits for something another process does (a login) before failing.
PATIENCE = 5.0


def recorded(name):
    with open(os.path.join(DATA, name)) as handle:
        return handle.read()


def lun_url(address=HOST, iqn=IQN, lun=1):
    return "iscsi://%s/%s/%d" % (address, iqn, lun)


# -- parse_show on recorded output ------------------------------------------------

def test_parse_target_with_identity():
    [target] = parse_show(recorded("show-identity.txt"))
    assert (target.tid, target.iqn, target.driver, target.state) == (1, IQN, "iscsi", "ready")
    assert target.acl == ["ALL"]
    assert target.sessions == 0 and target.initiators == []
    assert [lun.lun for lun in target.luns] == [0, 1]
    controller, disk = target.luns
    assert (controller.type, controller.backing_path) == ("controller", None)
    assert disk.type == "disk"
    assert (disk.scsi_id, disk.scsi_sn) == (IDENTITY["scsi_id"], IDENTITY["scsi_sn"])
    assert (disk.size_mb, disk.block_size) == (17, 512)
    assert disk.online is True and disk.readonly is False
    assert (disk.backing_type, disk.backing_path) == ("rdwr", "/tmp/iha9365exp/disk")
    assert target.lun(1) is disk and target.lun(7) is None


def test_parse_offline_target_with_logged_in_initiator():
    [target] = parse_show(recorded("show-session-offline.txt"))
    assert target.state == "offline"
    assert target.sessions == 1
    [initiator] = target.initiators
    assert initiator.as_dict() == {"nexus": 1, "iqn": CLIENT_IQN, "alias": None,
                                   "addresses": [CLIENT]}


def test_parse_acl_entries_and_default_identity():
    first, third = parse_show(recorded("show-acl-default-identity.txt"))
    # The CHAP account listed before the ACL is not an ACL entry.
    assert first.acl == [CLIENT, CLIENT_IQN]
    assert (third.tid, third.iqn, third.acl) == (3, "iqn.2026-01.example:sr3", [])
    # tgt's default SCSI ID keeps its inner spaces.
    assert (third.lun(2).scsi_id, third.lun(2).scsi_sn) == ("IET     00030002", "beaf32")


def test_parse_write_cache_from_the_backing_store_flags():
    [target] = parse_show(recorded("show-write-cache.txt"))
    found = dict((lun.lun, (lun.backing_flags, lun.write_cache)) for lun in target.luns)
    # LUN 0 is tgt's controller: no backing store, so no caching mode either.
    assert found == {0: ([], None), 1: (["sync"], False), 2: ([], True),
                     3: (["sync", "direct"], False), 4: (["direct"], True)}
    assert target.lun(1).as_dict()["write_cache"] is False
    assert target.lun(1).as_dict()["backing_flags"] == ["sync"]
    [older] = parse_show(recorded("show-identity.txt"))
    assert older.lun(1).write_cache is True


def test_write_cache_is_unknown_when_tgtd_does_not_print_the_flags():
    text = "\n".join(line for line in recorded("show-write-cache.txt").splitlines()
                     if "Backing store flags" not in line)
    [target] = parse_show(text)
    assert [lun.write_cache for lun in target.luns] == [None] * 5
    assert target.lun(1).as_dict()["backing_flags"] is None


def test_parse_nothing_when_tgtd_has_no_targets():
    assert parse_show("") == []


def test_as_dict_is_plain_json():
    targets = parse_show(recorded("show-session-offline.txt"))
    data = json.loads(json.dumps([target.as_dict() for target in targets]))
    assert data[0]["sessions"] == 1
    assert data[0]["luns"][1]["scsi_id"] == IDENTITY["scsi_id"]
    assert data[0]["initiators"][0]["addresses"] == [CLIENT]


# -- argument checks (no tgtd: a tgtadm that does not exist proves none was run) ----

@pytest.mark.parametrize("field,value", [
    ("scsi_id", "a,b"), ("scsi_id", "has space"), ("scsi_sn", "x=y"), ("scsi_id", "x" * 37),
    ("vendor_id", "NINECHARS"), ("product_id", "P" * 17), ("scsi_sn", ""),
    # tgt makes the NAA designator from the hex digits only: others would collide.
    ("scsi_id", "1fa0c0de000g"), ("scsi_id", "f" * 32),
])
def test_add_lun_refuses_identities_tgt_would_mangle(field, value):
    identity = dict(IDENTITY)
    identity[field] = value
    target = TgtTarget(tgtadm="/nonexistent/tgtadm")
    with pytest.raises(BadArgument) as caught:
        target.add_lun(1, 1, "/dev/null", **identity)
    assert field in caught.value.message


def test_lun_zero_and_unknown_states_are_refused():
    target = TgtTarget(tgtadm="/nonexistent/tgtadm")
    with pytest.raises(BadArgument):
        target.add_lun(1, 0, "/dev/null", **IDENTITY)
    with pytest.raises(BadArgument):
        target.set_state(1, "paused")
    with pytest.raises(BadArgument):
        target.create("one", IQN)


@pytest.mark.parametrize("value", ["no", "false", 0, None])
def test_add_lun_takes_only_a_bool_write_cache(value):
    target = TgtTarget(tgtadm="/nonexistent/tgtadm")
    with pytest.raises(BadArgument) as caught:
        target.add_lun(1, 1, "/dev/null", write_cache=value, **IDENTITY)
    assert "write_cache" in caught.value.message


def test_missing_tgtadm_is_reported_as_missing_tool():
    with pytest.raises(ToolMissing):
        TgtTarget(tgtadm="/nonexistent/tgtadm").show()


# -- lab fixtures ----------------------------------------------------------------

@pytest.fixture
def lab(request):
    built = netns.Lab()
    request.addfinalizer(built.cleanup)
    return built


@pytest.fixture
def host(lab):
    return lab.namespace("host")


@pytest.fixture
def client(lab, host):
    namespace = lab.namespace("client")
    lab.link(host, HOST_CIDR, namespace, CLIENT_CIDR)
    return namespace


@pytest.fixture
def daemon(request, host):
    started = tgtd.start_tgtd(host)
    request.addfinalizer(started.stop)
    return started


@pytest.fixture
def scratch(request):
    directory = tempfile.mkdtemp(prefix="iha-target-test-")
    request.addfinalizer(lambda: shutil.rmtree(directory, ignore_errors=True))
    return directory


def make_disk(directory, name="disk.img"):
    path = os.path.join(directory, name)
    with open(path, "wb") as disk:
        disk.truncate(DISK_BYTES)
    return path


@pytest.fixture
def disk(scratch):
    return make_disk(scratch)


@pytest.fixture
def target(daemon):
    # A short tgtadm timeout: a call that hangs (e.g. delete with a logged-in
    # initiator) fails the test instead of stalling it.
    return TgtTarget(control_port=daemon.control_port, timeout=5.0)


def export(target, disk, tid=1):
    """Target ``tid`` named IQN with ``disk`` as LUN 1, open to every initiator."""
    target.create(tid, IQN)
    target.add_lun(tid, 1, disk, **IDENTITY)
    target.bind(tid)


def start_logged_in_client(request, client, url, initiator=CLIENT_IQN):
    """An initiator that stays logged in (iscsi-perf reads until killed)."""
    devnull = open(os.devnull, "wb")
    process = client.popen(["iscsi-perf", "-i", initiator, "-m", "1", "-b", "1", url],
                           stdout=devnull, stderr=subprocess.STDOUT)
    devnull.close()

    def stop():
        if process.poll() is None:
            process.kill()
        process.wait()
    request.addfinalizer(stop)
    return process


def wait_for_sessions(target, iqn, count):
    deadline = time.time() + PATIENCE
    while True:
        found = target.find(iqn)
        if found is not None and found.sessions == count:
            return found
        if time.time() > deadline:
            raise AssertionError("target %s never had %d session(s): %r"
                                 % (iqn, count, found and found.as_dict()))
        time.sleep(0.05)


def inquiry_text(client, url, page=None):
    argv = ["iscsi-inq"]
    if page is not None:
        # iscsi-inq reads the page code as decimal: "0x80" would ask for page 0.
        argv += ["-e", "1", "-c", str(page)]
    return client.run(argv + [url], timeout=PATIENCE).stdout


def caching(client, url):
    """The LUN's caching mode page as an initiator sees it (MODE SENSE, Python 3 only)."""
    python3 = os.environ.get("PY3") or "python3"
    result = client.run([python3, ISCSI_IO, url, "caching"], timeout=PATIENCE + 5)
    return json.loads(result.stdout)


def backing_open_flags(daemon, path):
    """The flags tgtd opened ``path`` with, from its /proc fdinfo."""
    fds = "/proc/%d/fd" % daemon.pid
    for fd in os.listdir(fds):
        try:
            if os.readlink(os.path.join(fds, fd)) != path:
                continue
            with open("/proc/%d/fdinfo/%s" % (daemon.pid, fd)) as info:
                for line in info:
                    if line.startswith("flags:"):
                        return int(line.split()[1], 8)
        except (IOError, OSError):
            continue  # an fd closed meanwhile
    raise AssertionError("tgtd (pid %d) has no open file %s" % (daemon.pid, path))


def vpd_bytes(client, url, page):
    """The raw VPD page, read through the lab's libiscsi tool (Python 3 only)."""
    python3 = os.environ.get("PY3") or "python3"
    result = client.run([python3, ISCSI_IO, url, "vpd", "--page", "0x%02x" % page],
                        timeout=PATIENCE + 5)
    return bytearray.fromhex(json.loads(result.stdout)["hex"])


# -- a real tgtd -----------------------------------------------------------------

def test_exported_lun_is_visible_to_an_initiator(target, client, disk):
    export(target, disk)
    listing = client.run(["iscsi-ls", "-s", "iscsi://%s" % HOST], timeout=PATIENCE).stdout
    assert "Target:%s Portal:%s:3260" % (IQN, HOST) in listing
    assert "Lun:1    Type:DIRECT_ACCESS" in listing
    standard = inquiry_text(client, lun_url())
    assert "Vendor:%s" % IDENTITY["vendor_id"] in standard
    assert "Product:%s" % IDENTITY["product_id"] in standard
    serial = inquiry_text(client, lun_url(), page=0x80)
    assert "Unit Serial Number:[%s]" % IDENTITY["scsi_sn"].rjust(36) in serial
    identification = inquiry_text(client, lun_url(), page=0x83)
    assert "Designator:[%s]" % IDENTITY["scsi_id"] in identification


def test_show_reads_back_what_was_configured(target, disk):
    export(target, disk)
    found = target.find(IQN)
    assert (found.tid, found.state, found.acl, found.sessions) == (1, "ready", ["ALL"], 0)
    lun = found.lun(1)
    assert (lun.scsi_id, lun.scsi_sn, lun.backing_path) == (
        IDENTITY["scsi_id"], IDENTITY["scsi_sn"], disk)
    assert target.find("iqn.2026-01.example:absent") is None


def test_build_makes_in_one_go_what_the_step_by_step_export_makes(target, client, disk,
                                                                   scratch):
    export(target, disk)
    by_steps = target.find(IQN).as_dict()
    target.delete(1)
    built = target.build(1, IQN, [dict(IDENTITY, lun=1, device=disk)], ["ALL"])
    assert built.as_dict() == by_steps == target.find(IQN).as_dict()
    assert "Designator:[%s]" % IDENTITY["scsi_id"] in inquiry_text(client, lun_url(),
                                                                     page=0x83)
    assert caching(client, lun_url())["wce"] is False


def test_build_stops_at_the_first_refusal_and_names_it(target, scratch):
    missing = os.path.join(scratch, "absent-disk")
    with pytest.raises(TargetError) as caught:
        target.build(1, IQN, [dict(IDENTITY, lun=1, device=missing)], ["ALL"])
    assert "cannot add LUN 1 (%s) to target 1: %s does not exist" % (missing, missing) in (
        caught.value.message)
    # The target made before the refusal is the caller's to remove, as execute() does.
    assert [t.iqn for t in target.show()] == [IQN]
    target.delete(1)


def test_repeating_the_setup_changes_nothing(target, disk):
    export(target, disk)
    before = target.find(IQN).as_dict()
    export(target, disk)
    assert target.find(IQN).as_dict() == before


def test_a_lun_is_write_through_by_default(daemon, target, client, disk):
    export(target, disk)
    assert target.find(IQN).lun(1).write_cache is False
    # What the initiator is told: no write cache, and it cannot switch one on.
    seen = caching(client, lun_url())
    assert (seen["wce"], seen["wce_changeable"]) == (False, False)
    # What tgtd does: every write is synchronous (and so is WRITE SAME, which
    # tgt never follows with an fdatasync of its own).
    assert backing_open_flags(daemon, disk) & os.O_SYNC == os.O_SYNC


def test_a_lun_with_write_cache_goes_through_the_page_cache(daemon, target, client, disk):
    target.create(1, IQN)
    found = target.add_lun(1, 1, disk, write_cache=True, **IDENTITY)
    target.bind(1)
    assert found.write_cache is True and target.find(IQN).lun(1).write_cache is True
    seen = caching(client, lun_url())
    assert (seen["wce"], seen["wce_changeable"]) == (True, True)
    assert backing_open_flags(daemon, disk) & os.O_SYNC != os.O_SYNC


@pytest.mark.parametrize("first", [False, True])
def test_add_lun_refuses_to_switch_the_caching_mode_of_a_lun(target, client, disk, first):
    target.create(1, IQN)
    target.add_lun(1, 1, disk, write_cache=first, **IDENTITY)
    target.bind(1)
    before = target.find(IQN).as_dict()
    with pytest.raises(TargetError) as caught:
        target.add_lun(1, 1, disk, write_cache=not first, **IDENTITY)
    assert "LUN 1 is exported with the write cache %s" % ("on" if first else "off") in \
        caught.value.message
    assert "delete the LUN" in caught.value.message
    assert target.find(IQN).as_dict() == before
    assert caching(client, lun_url())["wce"] is first
    # The same mode again is fine.
    assert target.add_lun(1, 1, disk, write_cache=first, **IDENTITY).write_cache is first


@pytest.fixture
def sector_4k_device(request, disk):
    """A block device with 4 KiB logical sectors (a loop device over ``disk``)."""
    device = commands.run(["losetup", "--find", "--show", "--sector-size", "4096", disk],
                          timeout=PATIENCE).stdout.strip()
    request.addfinalizer(lambda: commands.run(["losetup", "-d", device], timeout=PATIENCE))
    return device


def test_write_through_lun_on_a_4k_sector_device_serves_512_byte_writes(target, client,
                                                                        sector_4k_device):
    # O_DIRECT would fail here: tgt still offers 512-byte blocks.
    export(target, sector_4k_device)
    assert target.find(IQN).lun(1).write_cache is False
    python3 = os.environ.get("PY3") or "python3"
    for command in ("write", "verify"):
        result = client.run([python3, ISCSI_IO, lun_url(), command, "--seed", "4k",
                             "--lba", "3", "--blocks", "3"], timeout=PATIENCE + 5,
                            check=False)
        assert result.returncode == 0, result.stderr
    with open(sector_4k_device, "rb") as device:
        device.seek(3 * 512)
        written = device.read(3 * 512)
    assert written != b"\0" * len(written)


def test_create_refuses_a_clashing_tid_or_name(target):
    target.create(1, IQN)
    with pytest.raises(TargetError) as caught:
        target.create(1, "iqn.2026-01.example:other")
    assert "target 1 (%s) is in the way" % IQN in caught.value.message
    with pytest.raises(TargetError):
        target.create(2, IQN)
    assert [(t.tid, t.iqn) for t in target.show()] == [(1, IQN)]


def test_add_lun_errors_name_the_lun_and_the_cause(target, scratch, disk):
    target.create(1, IQN)
    with pytest.raises(TargetError) as caught:
        target.add_lun(1, 1, os.path.join(scratch, "missing.img"), **IDENTITY)
    assert "missing.img does not exist" in caught.value.message
    # A directory gets past our checks; tgtadm's own refusal is passed on.
    with pytest.raises(TargetError) as caught:
        target.add_lun(1, 1, scratch, **IDENTITY)
    assert "add LUN 1" in caught.value.message and "tgtadm: invalid request" in \
        caught.value.message
    target.add_lun(1, 1, disk, **IDENTITY)
    with pytest.raises(TargetError) as caught:
        target.add_lun(1, 1, make_disk(scratch, "other.img"), **IDENTITY)
    assert "already exports %s" % disk in caught.value.message
    with pytest.raises(TargetError) as caught:
        target.add_lun(9, 1, disk, **IDENTITY)
    assert "target 9 does not exist" in caught.value.message


def test_offline_target_refuses_new_logins(target, client, disk):
    export(target, disk)
    target.set_state(1, "offline")
    assert target.find(IQN).state == "offline"
    refused = client.run(["iscsi-inq", lun_url()], timeout=PATIENCE, check=False)
    assert refused.returncode != 0 and "Failed to log in" in refused.stderr
    target.set_state(1, "ready")
    assert "Vendor:%s" % IDENTITY["vendor_id"] in inquiry_text(client, lun_url())


def test_logged_in_initiator_is_listed_and_delete_still_works(request, target, client,
                                                              disk):
    export(target, disk)
    start_logged_in_client(request, client, lun_url())
    found = wait_for_sessions(target, IQN, 1)
    [initiator] = found.initiators
    assert (initiator.iqn, initiator.addresses) == (CLIENT_IQN, [CLIENT])
    target.delete(1)
    assert target.show() == []
    gone = client.run(["iscsi-inq", lun_url()], timeout=PATIENCE, check=False)
    assert gone.returncode != 0 and "Login Failed" in gone.stderr
    target.delete(1)


def test_stopped_tgtd_is_reported_as_down(daemon, target):
    assert target.daemon_running()
    daemon.stop()
    assert not target.daemon_running()
    with pytest.raises(TargetDaemonDown) as caught:
        target.show()
    assert "not running on control port %d" % daemon.control_port in caught.value.message
    with pytest.raises(TargetDaemonDown):
        target.delete(1)


def test_tgtd_stops_with_targets_and_a_logged_in_initiator(request, daemon, target, client,
                                                         disk):
    export(target, disk)
    start_logged_in_client(request, client, lun_url())
    wait_for_sessions(target, IQN, 1)
    assert daemon.stop() == "exited"
    assert not daemon.running()
    assert not os.path.exists(os.path.join(tgtd.SOCKET_DIR, "socket.%d" % daemon.control_port))


def test_a_control_port_in_use_is_not_taken_over(daemon, target, lab):
    other = lab.namespace("other")
    with pytest.raises(tgtd.TgtdFailed) as caught:
        tgtd.start_tgtd(other, control_port=daemon.control_port)
    assert "another tgtd is using" in str(caught.value)
    assert target.daemon_running()
    assert daemon.stop() == "exited"


# -- what identifies a LUN to XenServer across two hosts ----------------------------

@pytest.fixture
def second_host(request, lab, client):
    """Another host namespace with its own tgtd, reached at 198.51.100.12."""
    namespace = lab.namespace("host2")
    lab.link(namespace, "198.51.100.12/24", client, "198.51.100.50/24")
    started = tgtd.start_tgtd(namespace)
    request.addfinalizer(started.stop)
    return TgtTarget(control_port=started.control_port, timeout=5.0)


def test_same_config_on_two_tgtds_gives_identical_scsi_identity(target, second_host,
                                                                client, scratch):
    export(target, make_disk(scratch, "a.img"))
    export(second_host, make_disk(scratch, "b.img"))
    here, there = lun_url(HOST), lun_url("198.51.100.12")
    for page in (0x80, 0x83):
        assert vpd_bytes(client, here, page) == vpd_bytes(client, there, page)
    assert inquiry_text(client, here) == inquiry_text(client, there)


def test_scsi_identity_depends_on_the_tid(target, second_host, client, scratch):
    export(target, make_disk(scratch, "a.img"), tid=1)
    export(second_host, make_disk(scratch, "b.img"), tid=2)
    here, there = lun_url(HOST), lun_url("198.51.100.12")
    assert vpd_bytes(client, here, 0x80) == vpd_bytes(client, there, 0x80)
    assert vpd_bytes(client, here, 0x83) != vpd_bytes(client, there, 0x83)


# -- the namespace helpers themselves ----------------------------------------------

@pytest.mark.parametrize("cidr", ["10.0.0.1/24", "192.0.3.1/24", "198.51.100.7/16",
                                  "192.0.2.300/24", "192.0.2.1"])
def test_only_documentation_addresses_can_be_assigned(cidr):
    with pytest.raises(ValueError):
        netns.check_lab_address(cidr)


def test_lab_cleanup_removes_everything_and_can_repeat(request):
    lab = netns.Lab()
    request.addfinalizer(lab.cleanup)
    one, two = lab.namespace("one"), lab.namespace("two")
    lab.link(one, "198.51.100.1/24", two, "198.51.100.2/24")
    sleeper = one.popen(["sleep", "60"])

    def reap():
        if sleeper.poll() is None:
            sleeper.kill()
        sleeper.wait()
    request.addfinalizer(reap)
    assert two.run(["ip", "-o", "addr", "show"]).stdout.count("198.51.100.2/24") == 1
    lab.cleanup()
    lab.cleanup()
    assert not one.exists() and not two.exists()
    assert sleeper.wait() != 0


def test_cleanup_all_removes_leftovers_with_the_prefix(request):
    prefix = netns.unique_prefix()
    request.addfinalizer(lambda: netns.cleanup_all(prefix))
    left_a = netns.Namespace.create(prefix + "-x")
    left_b = netns.Namespace.create(prefix + "-y")
    netns.VethLink.create(prefix + "a0", left_a, "192.0.2.1/24",
                          prefix + "b0", left_b, "192.0.2.2/24")
    bystander = netns.Lab()
    request.addfinalizer(bystander.cleanup)
    other = bystander.namespace("keep")
    assert sorted(netns.cleanup_all(prefix)) == [prefix + "-x", prefix + "-y"]
    assert not left_a.exists() and not left_b.exists()
    assert other.exists()


def _fake_tgtadm(tmp_path, script):
    path = tmp_path / "tgtadm"
    path.write_text(u"#!/bin/sh\n" + script)
    os.chmod(str(path), 0o755)
    return TgtTarget(tgtadm=str(path), control_port=7, timeout=0.5)


def test_a_hung_tgtd_is_an_error_not_a_stopped_daemon(tmp_path):
    hung = _fake_tgtadm(tmp_path, u"sleep 30\n")
    with pytest.raises(TargetError) as caught:
        hung.daemon_running()
    assert "did not answer within 0.5s" in caught.value.message
    assert "restart the tgt service" in caught.value.message


def test_a_stopped_tgtd_is_reported_as_not_running(tmp_path):
    down = _fake_tgtadm(tmp_path, u"echo 'tgtadm: failed to send request hdr to tgt daemon, "
                                  u"Transport endpoint is not connected' >&2\nexit 107\n")
    assert down.daemon_running() is False
    with pytest.raises(TargetDaemonDown):
        down.show()


def busy_tgtadm(directory, refusals):
    """A tgtadm that answers a target delete "still active" ``refusals`` times (as tgtd
    does while a LUN executes a command), counting the tries; anything else is the real one."""
    count = os.path.join(directory, "delete-tries")
    path = os.path.join(directory, "tgtadm")
    with open(path, "w") as handle:
        handle.write(
            '#!/bin/sh\n'
            'case "$*" in *"--op delete --force"*)\n'
            '  echo x >> %(count)s\n'
            '  if [ "$(wc -l < %(count)s)" -le %(refusals)d ]; then\n'
            '    echo "tgtadm: this logical unit is still active" >&2; exit 22; fi;;\n'
            'esac\n'
            'exec tgtadm "$@"\n' % {"count": count, "refusals": refusals})
    os.chmod(path, 0o755)
    return path, count


def test_delete_retries_while_a_lun_is_still_active(daemon, disk, scratch):
    tgtadm, count = busy_tgtadm(scratch, refusals=2)
    target = TgtTarget(tgtadm=tgtadm, control_port=daemon.control_port, timeout=5.0)
    export(target, disk)
    target.delete(1)
    assert target.get(1) is None
    with open(count) as tries:
        assert len(tries.read().splitlines()) == 3


def test_delete_gives_up_on_a_lun_that_stays_active(daemon, disk, scratch):
    tgtadm, count = busy_tgtadm(scratch, refusals=10 ** 6)
    target = TgtTarget(tgtadm=tgtadm, control_port=daemon.control_port, timeout=5.0)
    export(target, disk)
    with pytest.raises(TargetError) as caught:
        target.delete(1)
    assert "still active" in caught.value.message
    assert target.get(1) is not None
    TgtTarget(control_port=daemon.control_port).delete(1)


def test_delete_by_name_leaves_another_target_on_the_tid_alone(target, disk):
    export(target, disk)
    with pytest.raises(TargetError) as caught:
        target.delete(1, iqn="iqn.2026-01.org.example:someone-else")
    assert "belongs to %s" % IQN in caught.value.message
    assert target.get(1) is not None
    target.delete(1, iqn=IQN)
    assert target.get(1) is None
