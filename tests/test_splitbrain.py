"""A host's side of a DRBD split brain: the generations, the kernel's verdict, the steps."""

import io

import pytest

from iscsi_ha import arguments, splitbrain
from iscsi_ha.drbd import ResourceState, parse_gi
from iscsi_ha.errors import BadArgument, DrbdError, VictimServing

# drbd-utils 9.22 `drbdadm get-gi r0` (dt_print_v9_uuids) on a Primary, and drbdsetup-84's
# layout (dt_print_uuids): current, bitmap, two history UUIDs, then the flags.
GI_9 = ("5D33E0E1CAE37C87:3AD40A2B1C9F5F62:0000000000000000:0000000000000000:"
        "1:1:1:0:1:0:0:0:0:1:0:1\n")
GI_84 = "9A9F4D8A3F0E11C2:3AD40A2B1C9F5F62:0000000000000000:0000000000000000:1:1:0:0:0:0:0\n"

LOG_9 = (
    "2026-12-03T11:00:00.000 hostA kernel: drbd r0/0 drbd1 hostB: Began resync as SyncSource\n"
    "2026-12-03T11:05:00.000 hostA kernel: drbd r0 hostB: Connection closed\n"
    "2026-12-03T11:06:00.000 hostA kernel: drbd r0/0 drbd1 hostB: Split-Brain detected but "
    "unresolved, dropping connection!\n"
    "2026-12-03T11:06:01.000 hostA kernel: drbd r01/0 drbd2 hostB: Resync done\n")
LOG_84 = ("Dec  3 11:06:00 xcp-a kernel: block drbd1: Split-Brain detected but unresolved, "
          "dropping connection!\n")


def test_generations_drop_the_primary_bit_as_drbd_compares_them():
    assert parse_gi(GI_9) == {"current": "5D33E0E1CAE37C86", "bitmap": "3AD40A2B1C9F5F62",
                              "history": ["0000000000000000", "0000000000000000"],
                              "primary_bit": True}
    assert parse_gi(GI_84)["current"] == "9A9F4D8A3F0E11C2"


@pytest.mark.parametrize("text", ["", "Device is unconfigured\n", "5D33:3AD4:0:0:1\n"])
def test_generations_that_are_not_there_are_an_error(text):
    with pytest.raises(ValueError):
        parse_gi(text)


def test_the_kernel_log_names_the_split_resource_in_either_generations_words():
    assert "dropping connection" in splitbrain.logged(LOG_9, "r0", 1)
    assert splitbrain.logged(LOG_9, "r01", 2) is None  # its own last line is a resync
    assert "block drbd1" in splitbrain.logged(LOG_84, "r0", 1)
    assert splitbrain.logged(LOG_84, "r0", 11) is None
    assert splitbrain.logged(LOG_84, "r0", None) is None


def test_a_later_resolution_ends_the_split_brain_the_log_reported():
    solved = LOG_9 + ("2026-12-03T11:09:00.000 hostA kernel: drbd r0/0 drbd1 hostB: "
                      "Split-Brain detected, manually solved. Sync from this node\n")
    assert splitbrain.logged(solved, "r0", 1) is None
    again = solved + LOG_9.splitlines(True)[2]
    assert splitbrain.logged(again, "r0", 1) is not None


def state(role="Secondary", connection="StandAlone", disk="UpToDate"):
    return ResourceState("r0", role, "Unknown", connection, disk, "DUnknown")


def test_a_victim_goes_secondary_then_reconnects_discarding_its_data():
    assert splitbrain.plan(state("Primary"), "victim", []) == [
        ("drbd-secondary", "r0"), ("drbd-connect-discarding", "r0")]
    assert splitbrain.plan(state(), "victim", []) == [("drbd-connect-discarding", "r0")]


def test_a_victim_already_connecting_starts_again_so_that_it_surely_discards():
    assert splitbrain.plan(state(connection="Connecting"), "victim", []) == [
        ("drbd-disconnect", "r0"), ("drbd-connect-discarding", "r0")]


def test_a_survivor_only_reconnects_and_a_connected_resource_needs_nothing():
    assert splitbrain.plan(state("Primary"), "survivor", []) == [("drbd-connect", "r0")]
    assert splitbrain.plan(state(connection="Connecting"), "survivor", []) == []
    for role in splitbrain.ROLES:
        assert splitbrain.plan(state(connection="SyncTarget"), role, []) == []


def test_a_victim_that_serves_is_refused_and_told_to_demote_first():
    with pytest.raises(VictimServing) as refused:
        splitbrain.plan(state("Primary"), "victim", ["the VIP 192.0.2.100"])
    assert refused.value.code == "ISCSI_HA_VICTIM_SERVING"
    assert "demote it first" in refused.value.message
    assert refused.value.details == ["the VIP 192.0.2.100"]


def test_a_resource_that_is_down_is_refused_with_the_command_that_brings_it_up():
    with pytest.raises(DrbdError) as refused:
        splitbrain.plan(ResourceState.unconfigured("r0"), "survivor", [])
    assert "drbdadm up r0" in refused.value.message


def test_the_role_argument_is_victim_or_survivor_and_required():
    spec = arguments.SPECS["resolve-split-brain"]
    assert arguments.parse("resolve-split-brain", {"resource": "r0", "role": "victim"},
                           spec) == {"resource": "r0", "role": "victim", "reason": ""}
    for args in ({"resource": "r0"}, {"resource": "r0", "role": "loser"}):
        with pytest.raises(BadArgument) as refused:
            arguments.parse("resolve-split-brain", args, spec)
        assert refused.value.details == ["role"]


class FakeDrbd(object):
    def __init__(self):
        self.asked = []

    def generation(self, name):
        self.asked.append(name)
        return parse_gi(GI_9)


class Config(object):
    def __init__(self, kernel_log):
        self.kernel_log = kernel_log


def resource(connection, name="r0", device="/dev/drbd1"):
    return {"name": name, "device": device, "connection": connection,
            "connected": connection == "Connected", "configured": True}


def test_status_marks_a_standalone_resource_the_kernel_reported_split(tmp_path):
    log = tmp_path / "kern.log"
    with io.open(str(log), "w", encoding="utf-8") as handle:
        handle.write(u"%s" % LOG_9)
    drbd = FakeDrbd()
    resources = [resource("StandAlone"), resource("Connected", "r1", "/dev/drbd3"),
                 resource("Connecting", "r01", "/dev/drbd2")]
    splitbrain.annotate(Config(str(log)), drbd, resources)
    first, second, third = resources
    assert first["split_brain"] is True and "Split-Brain" in first["split_brain_logged"]
    assert first["generation"]["bitmap"] == "3AD40A2B1C9F5F62"
    assert (second["split_brain"], second["generation"]) == (False, None)  # nothing read
    assert (third["split_brain"], third["generation"]) == (False, None)
    assert drbd.asked == ["r0"]


def test_without_a_readable_kernel_log_status_claims_no_split_brain(tmp_path):
    resources = [resource("StandAlone")]
    splitbrain.annotate(Config(str(tmp_path / "missing.log")), FakeDrbd(), resources)
    assert resources[0]["split_brain"] is False
    assert resources[0]["generation"] is not None
