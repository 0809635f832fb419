"""A DRBD split brain in the lab, made as a sysadmin's mistake makes one: both hosts
promoted while the replication link was cut, each written, then the link healed. It is
reported (alert, status), never resolved by itself, and `iscsi-ha split-brain` resolves
it only on an explicit choice; the kept side's data reads back on both copies."""

import os
import subprocess

from tests.drbd_double import data_path, elapse, show
from tests.lab.running import wait_until

BLOCK = 4096
SURVIVOR_SEED = "split-brain-survivor"
VICTIM_DATA = b"written on hostB during the split".ljust(BLOCK, b"\0") * 2


def drbd_state(lab):
    return os.path.join(lab.state, "drbd")


def drbdadm(lab, host, *args):
    """hostB's own drbdadm, as a sysadmin on that host runs it."""
    record = lab.record()
    return subprocess.run(
        ["ip", "netns", "exec", record["namespaces"][host],
         os.path.join(lab.state, "hosts", host, "bin", "drbdadm")] + list(args),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
        timeout=60)


def replicas(lab):
    """Each host's DRBD connection state and the first blocks of its copy."""
    found = {}
    for host in ("hostA", "hostB"):
        with open(data_path(drbd_state(lab), host, "iscsi1"), "rb") as handle:
            head = handle.read(len(VICTIM_DATA))
        replica = show(drbd_state(lab))["resources"]["iscsi1"]["replicas"][host]
        found[host] = (replica["connection"], replica["role"], head)
    return found


def test_a_split_brain_is_reported_and_resolved_only_on_the_sysadmins_choice(lab):
    # Stopped, the master's controller cannot demote hostB's forced Primary before the
    # link heals (that would be a two-Primaries alert, which holds back the next one).
    lab("controller", "stop", "hostA")
    lab("cut-replication")
    elapse(drbd_state(lab), 15)  # both notice the cut; hostA's handler outdates hostB
    written = lab.io("write", "--seed", SURVIVOR_SEED, "--blocks", "8", "--lba", "0")
    assert written["blocks"] == 8
    forced = drbdadm(lab, "hostB", "primary", "--force", "iscsi1")
    assert forced.returncode == 0, forced.stdout
    with open(data_path(drbd_state(lab), "hostB", "iscsi1"), "r+b") as handle:
        handle.write(VICTIM_DATA)
    lab("heal-replication")  # DRBD refuses to reconnect: both copies took writes
    lab("controller", "start", "hostA")
    lab.wait_for_message("ISCSI_HA_SPLIT_BRAIN", "DRBD split brain on iscsi1")
    # Its pass demoted hostB's DRBD (it served nothing else) and moved nothing.
    wait_until(lambda: lab.drbd_roles() == {"hostA": "Primary", "hostB": "Secondary"},
               "hostB demoted")

    code, out, _ = lab.cli("hostB", "status")
    assert code == 0
    assert "SPLIT BRAIN: DRBD reported a split brain on hostA and hostB" in out
    before = replicas(lab)
    assert [before[h][0] for h in before] == ["standalone", "standalone"]
    assert before["hostB"][2] == VICTIM_DATA

    code, guide, _ = lab.cli("hostA", "split-brain")
    assert code == 0, guide
    assert "--discard hostB loses every write made on hostB since the split" in guide
    code, _, err = lab.cli("hostA", "split-brain", "iscsi1", "--discard", "hostB")
    assert code == 1
    assert "ISCSI_HA_CONFIRM_REQUIRED" in err and "add --yes" in err
    assert replicas(lab) == before  # refused: nothing changed

    code, out, err = lab.cli("hostA", "split-brain", "iscsi1", "--discard", "hostB", "--yes")
    assert code == 0, err
    assert "keep hostA's copy of iscsi1, discard hostB's" in out
    wait_until(lambda: [r[0] for r in replicas(lab).values()] == ["connected", "connected"]
               and show(drbd_state(lab))["resources"]["iscsi1"]["resync"] is None,
               "the victim resynced from the survivor")
    after = replicas(lab)
    assert after["hostA"][2] == after["hostB"][2] != VICTIM_DATA
    assert lab.io("verify", "--seed", SURVIVOR_SEED, "--blocks", "8", "--lba", "0")["ok"]
    assert lab.drbd_roles() == {"hostA": "Primary", "hostB": "Secondary"}
