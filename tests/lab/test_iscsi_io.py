"""tests/lab/iscsi_io.py against a real tgtd (Python 3, root).

A target namespace runs tgtd with one LUN backed by a temp file (and two more,
made by iscsi_ha.target without and with a write cache); a client namespace,
joined by a veth, runs the CLI the way the demo does.  What the client wrote is
checked in the backing file itself.
"""

import hashlib
import json
import os
import random
import secrets
import shutil
import subprocess
import sys
import time

import pytest

from iscsi_ha.target import TgtTarget
from tests.lab import iscsi_io

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TARGET_ADDRESS = "192.0.2.11"
CLIENT_ADDRESS = "192.0.2.50"
LUN_BYTES = 4 * 1024 * 1024
SERIAL = "IHALAB0001"
# LUNs that iscsi_ha.target adds without and with a write cache.
WRITE_THROUGH_LUN, WRITE_BACK_LUN = 2, 3
TGTD_SOCKET_DIR = "/var/run/tgtd"
ISCSI_LOGOUT_REQUEST = 0x06

# Run inside the target namespace: prints the iSCSI opcodes of the TCP segments
# that reach port 3260 until its stdin closes.  Only segments that start a PDU
# are meaningful, which holds for the small commands the test sends.
OPCODE_SNIFFER = r"""
import select, socket, sys
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(0x0800))
sock.bind((sys.argv[1], 0))
print("ready", flush=True)
opcodes = []
def take(frame):
    ip = frame[14:]
    if ip[9] != 6:
        return
    tcp = ip[(ip[0] & 0x0F) * 4:]
    payload = tcp[(tcp[12] >> 4) * 4:]
    if int.from_bytes(tcp[2:4], "big") == 3260 and len(payload) >= 48:
        opcodes.append(payload[0] & 0x3F)
while sys.stdin not in select.select([sock, sys.stdin], [], [])[0]:
    take(sock.recv(65535))
sock.setblocking(False)
while True:
    try:
        take(sock.recv(65535))
    except BlockingIOError:
        break
print(" ".join(str(op) for op in opcodes))
"""


def sh(*argv, check=True, timeout=10):
    return subprocess.run([str(a) for a in argv], check=check, timeout=timeout,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


class Lab(object):
    """Two namespaces, a veth between them, a tgtd with one LUN in the target one."""

    def __init__(self, workdir):
        self.prefix = "iha" + secrets.token_hex(3)
        self.target_ns = self.prefix + "t"
        self.client_ns = self.prefix + "c"
        self.target_if = self.prefix + "h"
        self.client_if = self.prefix + "p"
        self.iqn = "iqn.2026-01.org.example.iscsi-ha:%s" % self.prefix
        self.url = self.lun_url(1)
        self.workdir = str(workdir)
        self.backing_file = os.path.join(self.workdir, "lun1.img")
        self.tgtd_log = os.path.join(str(workdir), "tgtd.log")
        self.control_port = None
        self.tgtd = None
        self.namespaces = []

    def start(self):
        for namespace in (self.target_ns, self.client_ns):
            sh("ip", "netns", "add", namespace)
            self.namespaces.append(namespace)
            sh("ip", "-n", namespace, "link", "set", "lo", "up")
        sh("ip", "link", "add", self.target_if, "netns", self.target_ns, "type", "veth",
           "peer", "name", self.client_if, "netns", self.client_ns)
        for namespace, interface, address in (
                (self.target_ns, self.target_if, TARGET_ADDRESS),
                (self.client_ns, self.client_if, CLIENT_ADDRESS)):
            sh("ip", "-n", namespace, "addr", "add", address + "/24", "dev", interface)
            sh("ip", "-n", namespace, "link", "set", interface, "up")
        with open(self.backing_file, "wb") as backing:
            backing.truncate(LUN_BYTES)
        self._start_tgtd()
        self.tgtadm("--op", "new", "--mode", "target", "--tid", "1", "-T", self.iqn)
        self.tgtadm("--op", "new", "--mode", "logicalunit", "--tid", "1", "--lun", "1",
                    "-b", self.backing_file)
        self.tgtadm("--op", "update", "--mode", "logicalunit", "--tid", "1", "--lun", "1",
                    "--params", "scsi_sn=%s" % SERIAL)
        self.tgtadm("--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL")
        for lun, write_cache in ((WRITE_THROUGH_LUN, False), (WRITE_BACK_LUN, True)):
            backing = os.path.join(self.workdir, "lun%d.img" % lun)
            with open(backing, "wb") as disk:
                disk.truncate(LUN_BYTES)
            TgtTarget(control_port=self.control_port, timeout=5).add_lun(
                1, lun, backing, "1a%d" % lun, "IHALAB000%d" % lun, "XENHA", "LAB",
                write_cache=write_cache)

    def lun_url(self, lun):
        return "iscsi://%s/%s/%d" % (TARGET_ADDRESS, self.iqn, lun)

    def _start_tgtd(self):
        # The control socket lives in the shared filesystem: pick an unused number
        # (tgtd keeps it in a signed short).
        while True:
            port = random.randint(1024, 32767)
            if not os.path.exists(os.path.join(TGTD_SOCKET_DIR, "socket.%d" % port)):
                break
        self.control_port = port
        with open(self.tgtd_log, "wb") as log:
            self.tgtd = subprocess.Popen(
                ["ip", "netns", "exec", self.target_ns, "tgtd", "-f",
                 "--iscsi", "portal=0.0.0.0:3260", "-C", str(port)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 5
        while self.tgtadm("--op", "show", "--mode", "target", check=False).returncode != 0:
            if self.tgtd.poll() is not None or time.monotonic() > deadline:
                with open(self.tgtd_log) as log:
                    raise RuntimeError("tgtd did not come up: %s" % log.read().strip())
            time.sleep(0.02)

    def tgtadm(self, *args, check=True):
        return sh("tgtadm", "-C", self.control_port, "--lld", "iscsi", *args, check=check)

    def stop(self):
        if self.tgtd is not None:
            if self.tgtd.poll() is None:
                # A tgtd with targets ignores SIGTERM: take it offline and empty it first.
                self.tgtadm("--op", "update", "--mode", "sys", "--name", "State", "-v", "offline",
                            check=False)
                self.tgtadm("--op", "delete", "--mode", "target", "--tid", "1", "--force",
                            check=False)
                self.tgtadm("--op", "delete", "--mode", "system", check=False)
                try:
                    self.tgtd.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.tgtd.kill()
                    self.tgtd.wait(timeout=5)
            self.tgtd = None
            # tgtd leaves its control socket and lock file behind.
            for suffix in ("", ".lock"):
                path = os.path.join(TGTD_SOCKET_DIR, "socket.%d%s" % (self.control_port, suffix))
                if os.path.exists(path):
                    os.unlink(path)
        # Deleting a namespace also deletes the veth end inside it (and so its peer).
        while self.namespaces:
            sh("ip", "netns", "delete", self.namespaces.pop(), check=False)

    def client(self, *args, timeout=20):
        """Run the CLI inside the client namespace."""
        return subprocess.run(
            ["ip", "netns", "exec", self.client_ns, sys.executable, "-m", "tests.lab.iscsi_io"]
            + [str(a) for a in args],
            cwd=REPO, timeout=timeout, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def client_python(self, source, timeout=20):
        """Run Python source inside the client namespace, to use the library API there."""
        return subprocess.run(
            ["ip", "netns", "exec", self.client_ns, sys.executable, "-c", source],
            cwd=REPO, timeout=timeout, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def opcodes_sent_during(self, action):
        """The iSCSI opcodes the target's interface received while ``action`` ran."""
        sniffer = subprocess.Popen(
            ["ip", "netns", "exec", self.target_ns, sys.executable, "-c", OPCODE_SNIFFER,
             self.target_if],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert sniffer.stdout.readline().strip() == "ready", sniffer.stderr.read()
            result = action()
            stdout, stderr = sniffer.communicate(timeout=5)
        finally:
            kill_if_running(sniffer)
        assert sniffer.returncode == 0, stderr
        return result, [int(op) for op in stdout.split()]

    def read_backing(self, offset, size):
        with open(self.backing_file, "rb") as backing:
            backing.seek(offset)
            return backing.read(size)

    def write_backing(self, offset, data):
        with open(self.backing_file, "r+b") as backing:
            backing.seek(offset)
            backing.write(data)
            backing.flush()
            os.fsync(backing.fileno())


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.fail("these tests need root (network namespaces and tgtd)")
    workdir = tmp_path_factory.mktemp("iscsi_io")
    lab = Lab(workdir)
    try:
        lab.start()
        yield lab
    finally:
        lab.stop()
        shutil.rmtree(str(workdir), ignore_errors=True)


def reported(result):
    assert "Traceback" not in result.stderr, result.stderr
    return json.loads(result.stdout)


def test_capacity_matches_the_backing_file(lab):
    result = lab.client(lab.url, "capacity")

    assert result.returncode == 0, result.stderr
    assert reported(result) == {"block_size": 512, "blocks": LUN_BYTES // 512, "bytes": LUN_BYTES}


def test_write_lands_at_the_lba_offset_and_verifies(lab):
    written = lab.client(lab.url, "write", "--seed", "alpha", "--blocks", 4, "--lba", 5)
    verified = lab.client(lab.url, "verify", "--seed", "alpha", "--blocks", 4, "--lba", 5)

    assert written.returncode == 0, written.stderr
    assert reported(written) == {"seed": "alpha", "lba": 5, "blocks": 4, "block_size": 512}
    assert lab.read_backing(5 * 512, 4 * 512) == iscsi_io.pattern("alpha", 5, 4, 512)
    assert lab.read_backing(4 * 512, 512) == bytes(512), "the block before was touched"
    assert lab.read_backing(9 * 512, 512) == bytes(512), "the block after was touched"
    assert verified.returncode == 0, verified.stderr
    assert reported(verified)["ok"] is True
    assert reported(verified)["mismatched_blocks"] == []


def test_verify_names_the_corrupted_block_and_exits_1(lab):
    assert lab.client(lab.url, "write", "--seed", "beta", "--blocks", 3, "--lba", 20).returncode == 0
    lab.write_backing(21 * 512 + 100, b"\xff\x00\xff")

    result = lab.client(lab.url, "verify", "--seed", "beta", "--blocks", 3, "--lba", 20)

    assert result.returncode == 1
    report = reported(result)
    assert report["ok"] is False
    assert report["mismatched_blocks"] == [21]
    assert report["mismatched_count"] == 1


def test_verify_with_another_seed_fails_every_block(lab):
    assert lab.client(lab.url, "write", "--seed", "gamma", "--blocks", 2, "--lba", 30).returncode == 0

    result = lab.client(lab.url, "verify", "--seed", "delta", "--blocks", 2, "--lba", 30)

    assert result.returncode == 1
    assert reported(result)["mismatched_blocks"] == [30, 31]


def test_read_returns_what_the_backing_file_holds(lab):
    data = os.urandom(3 * 512)
    lab.write_backing(40 * 512, data)

    result = lab.client(lab.url, "read", "--blocks", 3, "--lba", 40, "--hex")

    assert result.returncode == 0, result.stderr
    report = reported(result)
    assert report["hex"] == data.hex()
    assert report["sha256"] == hashlib.sha256(data).hexdigest()


def test_a_write_larger_than_one_command_lands_whole(lab):
    blocks = iscsi_io.MAX_TRANSFER_BYTES // 512 + 7

    written = lab.client(lab.url, "write", "--seed", "big", "--blocks", blocks, "--lba", 1000)

    assert written.returncode == 0, written.stderr
    assert lab.read_backing(1000 * 512, blocks * 512) == iscsi_io.pattern("big", 1000, blocks, 512)


def test_vpd_unit_serial_number_page_carries_the_luns_serial(lab):
    result = lab.client(lab.url, "vpd", "--page", "0x80")

    assert result.returncode == 0, result.stderr
    report = reported(result)
    assert report["page"] == "0x80"
    assert report["unit_serial_number"] == SERIAL
    assert bytes.fromhex(report["hex"])[:2] == b"\x00\x80"


def test_vpd_device_identification_page_is_returned_raw(lab):
    result = lab.client(lab.url, "vpd", "--page", "0x83")

    assert result.returncode == 0, result.stderr
    raw = bytes.fromhex(reported(result)["hex"])
    assert raw[1] == 0x83
    assert len(raw) == 4 + int.from_bytes(raw[2:4], "big")


@pytest.mark.parametrize("lun, write_cache", [(WRITE_THROUGH_LUN, False),
                                              (WRITE_BACK_LUN, True), (1, True)])
def test_caching_reports_whether_the_target_caches_writes(lab, lun, write_cache):
    result = lab.client(lab.lun_url(lun), "caching")

    assert result.returncode == 0, result.stderr
    report = reported(result)
    assert report["page"] == "0x08"
    assert report["wce"] is write_cache
    # tgt lets an initiator switch its default cache; a write-through LUN keeps it off.
    assert report["wce_changeable"] is write_cache
    assert report["rcd"] is False
    page = iscsi_io.mode_page(bytes.fromhex(report["hex"]), 0x08)
    assert page[:2] == b"\x08\x12" and bool(page[2] & 0x04) is write_cache


def select_write_cache(lab, lun, wce):
    """Another initiator's MODE SELECT(6) of the caching page with WCE set to ``wce``."""
    report = reported(lab.client(lab.lun_url(lun), "caching"))
    page = bytearray(iscsi_io.mode_page(bytes.fromhex(report["hex"]), 0x08))
    page[2] = (page[2] & ~0x04) | (0x04 if wce else 0)
    parameters = bytes(4) + bytes(page)
    source = """
import ctypes, sys
from tests.lab import iscsi_io
with iscsi_io.IscsiClient(%r) as client:
    build = client._lib.scsi_cdb_modeselect6
    build.restype, build.argtypes = ctypes.c_void_p, [ctypes.c_int] * 3
    data = ctypes.create_string_buffer(%r, %d)
    try:
        client._execute(build(1, 0, %d), "MODE SELECT(6)", data_out=data)
    except iscsi_io.ScsiCommandFailed as exc:
        sys.exit("refused: sense key %%d" %% exc.sense_key)
""" % (lab.lun_url(lun), parameters, len(parameters), len(parameters))
    return lab.client_python(source)


def test_caching_follows_a_mode_select_that_switches_the_write_cache(lab):
    try:
        switched = select_write_cache(lab, WRITE_BACK_LUN, False)
        assert switched.returncode == 0, switched.stderr
        assert reported(lab.client(lab.lun_url(WRITE_BACK_LUN), "caching"))["wce"] is False
    finally:
        restored = select_write_cache(lab, WRITE_BACK_LUN, True)
    assert restored.returncode == 0, restored.stderr
    assert reported(lab.client(lab.lun_url(WRITE_BACK_LUN), "caching"))["wce"] is True


def test_no_initiator_can_switch_on_the_cache_of_a_write_through_lun(lab):
    result = select_write_cache(lab, WRITE_THROUGH_LUN, True)

    assert result.returncode == 1
    assert "refused: sense key 5" in result.stderr  # ILLEGAL REQUEST
    assert reported(lab.client(lab.lun_url(WRITE_THROUGH_LUN), "caching"))["wce"] is False


def test_api_reports_the_sense_of_a_failed_command(lab):
    # READ(16) past the end, sent without the client's own range check.
    source = """
import json
from tests.lab import iscsi_io
with iscsi_io.IscsiClient(%r) as client:
    end = client.capacity().blocks
    try:
        client._execute(client._lib.scsi_cdb_read16(end, 512, 512, 0, 0, 0, 0, 0), "READ(16)",
                        data_in=iscsi_io.ctypes.create_string_buffer(512))
    except iscsi_io.ScsiCommandFailed as exc:
        print(json.dumps({"status": exc.status, "sense_key": exc.sense_key, "ascq": exc.ascq,
                          "message": str(exc)}))
""" % lab.url

    result = lab.client_python(source)

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["status"] == iscsi_io.SCSI_STATUS_CHECK_CONDITION
    assert report["sense_key"] == 5  # ILLEGAL REQUEST
    assert report["ascq"] == 0x2100  # LOGICAL BLOCK ADDRESS OUT OF RANGE
    assert "ILLEGAL" in report["message"]


@pytest.mark.parametrize("make_url, args, expected", [
    (lambda lab: "iscsi://%s/iqn.2026-01.org.example:nosuch/1" % TARGET_ADDRESS, ["capacity"],
     "cannot log in"),
    (lambda lab: "iscsi://%s:3261/%s/1" % (TARGET_ADDRESS, lab.iqn), ["capacity"], "refused"),
    (lambda lab: "http://%s/%s/1" % (TARGET_ADDRESS, lab.iqn), ["capacity"], "Invalid URL"),
    (lambda lab: lab.url, ["read", "--blocks", "2", "--lba", str(LUN_BYTES // 512 - 1)],
     "outside the LUN"),
    (lambda lab: lab.url, ["probe", "--duration", "1", "--lba", str(LUN_BYTES // 512)],
     "outside the LUN"),
])
def test_errors_exit_2_with_a_message_and_no_traceback(lab, make_url, args, expected):
    result = lab.client(make_url(lab), *args)

    assert result.returncode == 2
    assert result.stdout == ""
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args, exit_code", [
    (["capacity"], 0),
    (["verify", "--seed", "never-written", "--blocks", "1", "--lba", "3000"], 1),
    (["probe", "--duration", "0.3"], 0),
])
def test_every_command_ends_its_session_with_a_logout(lab, args, exit_code):
    result, opcodes = lab.opcodes_sent_during(lambda: lab.client(lab.url, *args))

    assert result.returncode == exit_code, result.stderr
    assert opcodes[-1:] == [ISCSI_LOGOUT_REQUEST], opcodes


def test_a_silent_portal_fails_within_the_timeout(lab):
    # Nobody owns this address; a static neighbour entry makes the SYN leave (and
    # be dropped by the target namespace) instead of failing fast on ARP.
    url = "iscsi://192.0.2.99/%s/1" % lab.iqn
    sh("ip", "-n", lab.client_ns, "neigh", "replace", "192.0.2.99",
       "lladdr", "02:00:00:00:00:99", "dev", lab.client_if)

    result = lab.client(url, "capacity", "--timeout", "0.5", timeout=10)

    assert result.returncode == 2
    assert "no answer within 0.5 s" in result.stderr


def test_probe_reports_the_outage_it_lived_through(lab):
    initiator = "iqn.2026-01.org.example.iscsi-ha:probe-%s" % lab.prefix
    probe = subprocess.Popen(
        ["ip", "netns", "exec", lab.client_ns, sys.executable, "-m", "tests.lab.iscsi_io",
         lab.url, "probe", "--interval", "0.05", "--duration", "2.5", "--timeout", "0.3",
         "--initiator", initiator],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 2
        while initiator not in lab.tgtadm("--op", "show", "--mode", "target").stdout:
            assert time.monotonic() < deadline, "the probe never logged in"
            time.sleep(0.02)
        time.sleep(0.2)
        # The portal address vanishes, as a VIP does during a switchover.
        sh("ip", "-n", lab.target_ns, "addr", "del", TARGET_ADDRESS + "/24", "dev", lab.target_if)
        outage_started = time.monotonic()
        time.sleep(0.8)
        outage = time.monotonic() - outage_started
        sh("ip", "-n", lab.target_ns, "addr", "add", TARGET_ADDRESS + "/24", "dev", lab.target_if)
        stdout, stderr = probe.communicate(timeout=10)
    finally:
        kill_if_running(probe)
        sh("ip", "-n", lab.target_ns, "addr", "replace", TARGET_ADDRESS + "/24",
           "dev", lab.target_if)

    assert probe.returncode == 0, stderr
    report = json.loads(stdout)
    assert report["reads_ok"] > 0
    assert report["failures"] >= 1
    assert report["logins"] >= 2
    assert report["recovered"] is True
    assert report["longest_gap_seconds"] >= outage
    assert report["longest_gap_seconds"] < report["duration_seconds"]


def test_probe_of_a_healthy_portal_sees_no_failure(lab):
    result = lab.client(lab.url, "probe", "--interval", "0.05", "--duration", "0.5")

    assert result.returncode == 0, result.stderr
    report = reported(result)
    assert report["failures"] == 0
    assert report["logins"] == 1
    assert report["reads_ok"] >= 2
    assert report["recovered"] is True


def test_mode_page_skips_the_block_descriptor_and_other_pages():
    control = bytes([0x0A, 0x0A]) + bytes(10)
    caching = bytes([0x08, 0x12, 0x14]) + bytes(17)
    descriptor = bytes(8)
    body = descriptor + control + caching
    data = bytes([3 + len(body), 0, 0x10, len(descriptor)]) + body

    assert iscsi_io.mode_page(data, 0x08) == caching
    assert iscsi_io.mode_page(data, 0x0A) == control


@pytest.mark.parametrize("data", [
    b"\x03\x00\x00",                               # shorter than the header
    bytes([7, 0, 0, 0, 0x0A, 0x02, 0, 0]),          # only another page
    bytes([7, 0, 0, 0, 0x08, 0x12, 0x14, 0]),       # the page is cut short
])
def test_mode_page_refuses_data_without_the_whole_page(data):
    with pytest.raises(iscsi_io.IscsiIoError):
        iscsi_io.mode_page(data, 0x08)


def test_pattern_depends_on_seed_lba_and_every_byte():
    block = iscsi_io.pattern_block("s", 7, 512)

    assert len(block) == 512
    assert block == iscsi_io.pattern_block("s", 7, 512)
    assert block != iscsi_io.pattern_block("s", 8, 512)
    assert block != iscsi_io.pattern_block("t", 7, 512)
    # Not one short hash repeated: a shift inside the block must show.
    assert block[:32] != block[32:64]


def start_session_writer(lab, log_path, seed):
    writer = subprocess.Popen(
        ["ip", "netns", "exec", lab.client_ns, sys.executable, "-m", "tests.lab.iscsi_io",
         lab.url, "session-writer", "--seed", seed, "--blocks", "32", "--log", log_path],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return writer


def kill_if_running(process):
    """For a ``finally``: a process the test did not see end is killed and reaped."""
    if process.poll() is None:
        process.kill()
        process.wait()


def wait_for_acks(log_path, count, writer):
    deadline = time.monotonic() + 20
    while not os.path.exists(log_path) or len(iscsi_io.SessionLog.read(log_path).acks) < count:
        assert writer.poll() is None, writer.communicate()
        assert time.monotonic() < deadline, "the session writer acknowledged too little"
        time.sleep(0.02)


def test_session_writer_rides_out_a_reset_connection_in_one_session(lab, tmp_path):
    log_path = str(tmp_path / "session.log")
    writer = start_session_writer(lab, log_path, "reset")
    try:
        wait_for_acks(log_path, 20, writer)
        # The connection vanishes under the session (as the VIP's move resets it).
        reset_at = time.time()
        sh("ip", "netns", "exec", lab.target_ns, "ss", "-K", "-t", "state", "established",
           "( sport = :3260 )")
        before = len(iscsi_io.SessionLog.read(log_path).acks)
        wait_for_acks(log_path, before + 20, writer)
        writer.terminate()
        stdout, stderr = writer.communicate(timeout=20)
    finally:
        kill_if_running(writer)

    assert writer.returncode == 0, stderr
    report = json.loads(stdout)
    # libiscsi logged in again by itself: the writer's own login stays the only one.
    assert report["logins"] == 1
    session = iscsi_io.SessionLog.read(log_path)
    assert len(session.logins) == 1
    # The write the reset caught was replayed, answered UNIT ATTENTION 29/00 and retried.
    assert [entry["reset"] for entry in session.between(reset_at, time.time())["retries"]] \
        == [True]
    assert session.dark_window(reset_at, reset_at) is not None
    check = reported(lab.client(lab.url, "check-writes", "--seed", "reset", "--log",
                                log_path))
    assert check["ok"] is True
    assert check["acknowledged_writes"] == report["acknowledged"]


def write_session_log(path, lines):
    with open(path, "w") as log:
        for entry in lines:
            log.write(json.dumps(entry) + "\n")


def test_session_log_finds_the_longest_gap_that_reaches_into_a_window(tmp_path):
    path = str(tmp_path / "log")
    acks = [1.0, 1.1, 1.2, 3.0, 3.1, 3.15, 5.0]
    lines = [{"login": 0.9}]
    for seq, acked in enumerate(acks):
        lines += [{"seq": seq, "lba": seq, "sent": acked - 0.01}, {"seq": seq, "acked": acked}]
    lines.insert(7, {"seq": 3, "retried": 2.99, "error": "UA", "reset": True})
    write_session_log(path, lines)

    session = iscsi_io.SessionLog.read(path)

    assert session.acks == acks
    # A gap that began before the window and ended inside it counts.
    assert session.dark_window(2.0, 2.5) == (1.2, 3.0)
    assert session.dark_window(3.05, 3.12) == (3.0, 3.1)
    assert session.dark_window(3.05, 6.0) == (3.15, 5.0)
    assert session.dark_window(5.5, 6.0) is None  # no acknowledgement after: not recovered
    assert session.first_ack_after(1.15) == 1.2
    assert session.last_ack_before(3.0) == 1.2
    assert session.between(2.0, 3.0) == {
        "retries": [{"seq": 3, "retried": 2.99, "error": "UA", "reset": True}], "logins": []}


def test_session_log_ignores_a_line_still_being_written(tmp_path):
    path = str(tmp_path / "log")
    with open(path, "w") as log:
        log.write(json.dumps({"seq": 0, "acked": 1.0}) + "\n" + '{"seq": 1, "ack')

    assert iscsi_io.SessionLog.read(path).acks == [1.0]
