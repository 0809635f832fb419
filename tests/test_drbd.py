"""Tests for iscsi_ha.drbd: parsing recorded DRBD output, and the Drbd runner
against stand-in drbdadm/drbdsetup scripts that replay recorded output.

The recordings and the source documenting each are listed in tests/data/drbd/README.md.
"""

import json
import os

import pytest

from iscsi_ha import drbd
from iscsi_ha.errors import (BadConfig, CommandFailed, DiskNotUpToDate, DrbdError,
                             PeerPrimary)

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "drbd")


def recorded(name):
    with open(os.path.join(DATA, name)) as handle:
        return handle.read()


def summary(state):
    return (state.role, state.peer_role, state.connection, state.disk, state.peer_disk)


def parse_84_recording(scenario, name="r0"):
    return drbd.parse_84(recorded("84-%s.role" % scenario), recorded("84-%s.cstate" % scenario),
                         recorded("84-%s.dstate" % scenario), name)


UNCONFIGURED = ("Unconfigured", "Unknown", "StandAlone", "Diskless", "DUnknown")

# drbdadm role / cstate / dstate on DRBD 8.4 (user/v84/drbdsetup.c role_scmd & co).
STATES_84 = {
    "connected": ("Primary", "Secondary", "Connected", "UpToDate", "UpToDate"),
    "wfconnection": ("Primary", "Unknown", "WFConnection", "UpToDate", "DUnknown"),
    "standalone": ("Secondary", "Unknown", "StandAlone", "UpToDate", "DUnknown"),
    "syncing": ("Primary", "Secondary", "SyncSource", "UpToDate", "Inconsistent"),
    "outdated-peer": ("Primary", "Unknown", "WFConnection", "UpToDate", "Outdated"),
    "peer-primary": ("Secondary", "Primary", "Connected", "UpToDate", "UpToDate"),
    "two-volumes": ("Secondary", "Primary", "SyncTarget", "Inconsistent", "UpToDate"),
    "unconfigured": UNCONFIGURED,
}

# drbdsetup status --json and drbdadm status on DRBD 9 (user/v9/drbdsetup.c status_cmd).
STATES_9 = {
    "connected": ("Primary", "Secondary", "Connected", "UpToDate", "UpToDate"),
    "connecting": ("Primary", "Unknown", "Connecting", "UpToDate", "DUnknown"),
    "standalone": ("Secondary", "Unknown", "StandAlone", "UpToDate", "DUnknown"),
    "syncing": ("Primary", "Secondary", "SyncSource", "UpToDate", "Inconsistent"),
    "peer-primary": ("Secondary", "Primary", "Connected", "UpToDate", "UpToDate"),
    "down": UNCONFIGURED,
}
# The text status shows a peer's disk only while connected, so an Outdated peer is JSON-only.
STATES_9_JSON_ONLY = {
    "outdated-peer": ("Primary", "Unknown", "Connecting", "UpToDate", "Outdated"),
}
STATES_9_TEXT_ONLY = {
    "outdated": ("Secondary", "Unknown", "Connecting", "Outdated", "DUnknown"),
}
# r1 in the "all" listings: two volumes, one paused in a resync behind another resource.
R1 = ("Secondary", "Primary", "PausedSyncT", "Inconsistent", "UpToDate")


def both_9_formats(extra_json, extra_text):
    cases = [(scenario, ".json", expected) for scenario, expected in STATES_9.items()]
    cases += [(scenario, ".status", expected) for scenario, expected in STATES_9.items()]
    cases += [(scenario, ".json", expected) for scenario, expected in extra_json.items()]
    cases += [(scenario, ".status", expected) for scenario, expected in extra_text.items()]
    return sorted(cases)


def parse_9_recording(scenario, suffix, name="r0"):
    text = recorded("9-%s%s" % (scenario, suffix))
    if suffix == ".json":
        return drbd.parse_status_json(text, name)
    return drbd.parse_status_text(text, name)


# --- parsing -------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", sorted(STATES_84))
def test_parse_84_reads_every_recording(scenario):
    assert summary(parse_84_recording(scenario)) == STATES_84[scenario]


@pytest.mark.parametrize("scenario,suffix,expected",
                         both_9_formats(STATES_9_JSON_ONLY, STATES_9_TEXT_ONLY))
def test_parse_9_reads_every_recording(scenario, suffix, expected):
    assert summary(parse_9_recording(scenario, suffix)) == expected


@pytest.mark.parametrize("scenario", sorted(set(STATES_9) - set(["down"])))
def test_json_and_text_status_agree(scenario):
    from_json = parse_9_recording(scenario, ".json").as_dict()
    from_text = parse_9_recording(scenario, ".status").as_dict()
    # Only the JSON status has the resync figures.
    for key in ("out_of_sync_bytes", "percent_in_sync"):
        assert from_text.pop(key) is None
        from_json.pop(key)
    assert from_json == from_text


@pytest.mark.parametrize("suffix", [".json", ".status"])
def test_a_listing_of_all_resources_yields_the_one_asked_for(suffix):
    assert summary(parse_9_recording("all", suffix, "r0")) == STATES_9["connected"]
    # The wrapped "resync-suspended" line must not be mistaken for a new volume.
    assert summary(parse_9_recording("all", suffix, "r1")) == R1
    assert summary(parse_9_recording("all", suffix, "r7")) == UNCONFIGURED


# r0: a diskless tie-breaker ("arbiter") sorts before the real peer, hostB.
# r1: three nodes with disks; the Primary one, hostC, comes last.
SEVERAL_PEERS = {"r0": ("Primary", "Secondary", "Connected", "UpToDate", "UpToDate"),
                 "r1": ("Secondary", "Primary", "Connected", "UpToDate", "UpToDate")}


@pytest.mark.parametrize("suffix", [".json", ".status"])
@pytest.mark.parametrize("name", sorted(SEVERAL_PEERS))
def test_with_several_peers_a_primary_or_else_a_disk_holder_is_reported(name, suffix):
    assert summary(parse_9_recording("several-peers", suffix, name)) == SEVERAL_PEERS[name]


def test_lines_drbdsetup_wrapped_at_80_columns_are_joined():
    text = recorded("9-wrapped.status")
    assert summary(drbd.parse_status_text(text, "r0")) == STATES_9["connected"]
    suspended = drbd.parse_status_text(text, "sr-5f3c2a90-1b7e-4c41-9d2e-8a6f0e4b1c37")
    assert summary(suspended) == STATES_9["connecting"]


def test_derived_properties_follow_drbd_states():
    syncing = parse_84_recording("syncing")
    assert syncing.is_primary and syncing.connected and syncing.disk_up_to_date
    assert not syncing.peer_is_primary and syncing.configured

    waiting = parse_84_recording("wfconnection")
    assert waiting.is_primary and not waiting.connected

    peer_primary = parse_9_recording("peer-primary", ".json")
    assert peer_primary.peer_is_primary and not peer_primary.is_primary
    assert peer_primary.connected

    target = parse_84_recording("two-volumes")
    assert target.connected and not target.disk_up_to_date

    down = parse_9_recording("down", ".json")
    assert not down.configured and not down.is_primary and not down.connected


def test_state_serialises_to_json_with_every_field():
    state = parse_9_recording("syncing", ".json")
    assert json.loads(json.dumps(state.as_dict())) == {
        "name": "r0", "role": "Primary", "peer_role": "Secondary",
        "connection": "SyncSource", "disk": "UpToDate", "peer_disk": "Inconsistent",
        "is_primary": True, "peer_is_primary": False, "connected": True,
        "disk_up_to_date": True, "configured": True, "suspended": [],
        "out_of_sync_bytes": 9174729 * 1024, "percent_in_sync": 12.5,
    }


def test_resync_figures_come_from_the_json_status_only():
    connected = parse_9_recording("connected", ".json")
    assert (connected.out_of_sync_bytes, connected.percent_in_sync) == (0, 100.0)
    text = parse_9_recording("syncing", ".status")
    assert (text.out_of_sync_bytes, text.percent_in_sync) == (None, None)
    # Disconnected, DRBD still counts what the peer will need: its bitmap.
    alone = parse_9_recording("standalone", ".json")
    assert (alone.out_of_sync_bytes, alone.percent_in_sync) == (0, 100.0)


def test_colour_codes_in_text_status_are_ignored():
    coloured = ("r0 role:\x1b[1;36mPrimary\x1b[0m\n  disk:\x1b[32mUpToDate\x1b[0m\n"
                "  hostB role:Secondary\n    peer-disk:UpToDate\n\n")
    assert summary(drbd.parse_status_text(coloured, "r0")) == STATES_9["connected"]


@pytest.mark.parametrize("text", ["", "not json", "{\"name\": \"r0\"}",
                                  '[{"name": "r0", "role": "Primary"}]'])
def test_unusable_json_is_rejected(text):
    with pytest.raises(ValueError):
        drbd.parse_status_json(text, "r0")


@pytest.mark.parametrize("role,cstate,dstate", [
    ("Primary", "Connected", "UpToDate/UpToDate"),
    ("Primary/Master", "Connected", "UpToDate/UpToDate"),
    ("Primary/Secondary", "Connected", "UpToDate"),
    ("Primary/Secondary", "", "UpToDate/UpToDate"),
])
def test_malformed_84_output_is_rejected(role, cstate, dstate):
    with pytest.raises(ValueError):
        drbd.parse_84(role, cstate, dstate, "r0")


@pytest.mark.parametrize("text", [
    "r0 suspended:no\n  disk:UpToDate\n\n",
    "r0 role:Primary\n  volume:0 quorum:no\n\n",
    "r0 role:Primary\n   disk:UpToDate\n\n",
], ids=["no-role", "no-disk-state", "odd-indent"])
def test_malformed_text_status_is_rejected(text):
    with pytest.raises(ValueError):
        drbd.parse_status_text(text, "r0")


@pytest.mark.parametrize("recording,generation", [
    ("version-84.txt", "8.4"),
    ("version-9.txt", "9"),
    ("version-9-no-module.txt", "9"),
    ("version-84-no-module.txt", "8.4"),
])
def test_parse_version_follows_the_kernel_then_drbdadm(recording, generation):
    assert drbd.parse_version(recorded(recording)) == generation


@pytest.mark.parametrize("text", [recorded("version-83.txt"), "DRBDADM_VERSION=9.22.0\n",
                                  "DRBD_KERNEL_VERSION_CODE=banana\n"])
def test_parse_version_rejects_what_it_cannot_support(text):
    with pytest.raises(ValueError):
        drbd.parse_version(text)


# --- running the tools -----------------------------------------------------------------


def replay(out=None, err=None, code=0, text=None):
    """Shell that prints recorded stdout/stderr and exits like DRBD did."""
    steps = []
    if text is not None:
        steps.append("printf '%s\\n'" % text)
    if out:
        steps.append("cat '%s'" % os.path.join(DATA, out))
    if err:
        steps.append("cat '%s' >&2" % os.path.join(DATA, err))
    return "; ".join(steps + ["exit %d" % code])


def stand_in(tmpdir, name, answers):
    """An executable that answers each exact argument string with a replay()."""
    lines = ["#!/bin/sh", 'case "$*" in']
    for arguments, action in sorted(answers.items()):
        lines.append("  '%s') %s;;" % (arguments, action))
    lines += ['  *) echo "stand-in %s: unexpected arguments: $*" >&2; exit 99;;' % name,
              "esac", ""]
    path = os.path.join(str(tmpdir), name)
    with open(path, "w") as handle:
        handle.write("\n".join(lines))
    os.chmod(path, 0o755)
    return path


def drbd_9(tmpdir, drbdadm=None, drbdsetup=None, **options):
    """A Drbd for DRBD 9; a tool without answers is absent."""
    return drbd.Drbd(
        drbdadm=stand_in(tmpdir, "drbdadm", drbdadm) if drbdadm else str(tmpdir.join("none")),
        drbdsetup=stand_in(tmpdir, "drbdsetup", drbdsetup) if drbdsetup
        else str(tmpdir.join("no-drbdsetup")),
        version="9", **options)


def drbd_84(tmpdir, drbdadm, **options):
    return drbd.Drbd(drbdadm=stand_in(tmpdir, "drbdadm", drbdadm),
                     drbdsetup=str(tmpdir.join("no-drbdsetup")), version="8.4", **options)


def queries_84(scenario):
    return dict(("%s r0" % query, replay("84-%s.%s" % (scenario, query)))
                for query in ("role", "cstate", "dstate"))


REFUSALS = [
    # (generation, action, recording, exit code, error type, DRBD's reason, part of the fix)
    ("9", "promote", "9-primary-peer-primary.stderr", 11, PeerPrimary,
     "(-1) Multiple primaries not allowed by config", "demote the other host first"),
    ("9", "promote", "9-primary-not-uptodate.stderr", 17, DiskNotUpToDate,
     "(-2) Need access to UpToDate data", "wait for the resync to finish, or use force=true"),
    ("9", "demote", "9-secondary-held-open.stderr", 11, DrbdError,
     "(-12) Device is held open by someone", "stop it (e.g. the iSCSI target)"),
    ("8.4", "promote", "84-primary-peer-primary.stderr", 11, PeerPrimary,
     "(-1) Multiple primaries not allowed by config", "demote the other host first"),
    ("8.4", "promote", "84-primary-not-uptodate.stderr", 17, DiskNotUpToDate,
     "(-2) Need access to UpToDate data", "wait for the resync to finish, or use force=true"),
    ("8.4", "promote", "84-primary-peer-not-outdated.stderr", 11, DrbdError,
     "(-7) Refusing to be Primary while peer is not outdated",
     "the peer may still be Primary: power it off or demote it first"),
    ("8.4", "demote", "84-secondary-held-open.stderr", 11, DrbdError,
     "(-12) Device is held open by someone", "stop it (e.g. the iSCSI target)"),
]


@pytest.mark.parametrize("generation,action,recording,code,error_type,reason,fix", REFUSALS,
                         ids=[refusal[2] for refusal in REFUSALS])
def test_refusals_map_to_errors_that_quote_drbd_and_say_the_fix(
        tmpdir, generation, action, recording, code, error_type, reason, fix):
    verb = {"promote": "primary", "demote": "secondary"}[action]
    answers = {"%s r0" % verb: replay(err=recording, code=code)}
    if generation == "9":
        host = drbd_9(tmpdir, drbdadm=answers)
    else:
        host = drbd_84(tmpdir, answers)
    with pytest.raises(error_type) as caught:
        getattr(host, action)("r0")
    error = caught.value
    assert type(error) is error_type
    assert error.message.startswith("cannot %s r0: " % action)
    assert '"%s"' % reason in error.message
    assert fix in error.message
    assert error.details == [line for line in recorded(recording).splitlines() if line]


def test_held_open_refusal_keeps_the_openers_drbd_listed(tmpdir):
    host = drbd_9(tmpdir, drbdadm={
        "secondary r0": replay(err="9-secondary-held-open.stderr", code=11)})
    with pytest.raises(DrbdError) as caught:
        host.demote("r0")
    assert "drbd0 opened by tgtd (pid 2417) at 2025-03-04 10:11:12.345" in caught.value.params()


def test_force_promotes_what_drbd_refuses_without_it(tmpdir):
    host = drbd_9(tmpdir, drbdadm={
        "primary r0": replay(err="9-primary-not-uptodate.stderr", code=17),
        "primary --force r0": replay(),
        "status r0": replay("9-connected.status"),
    })
    with pytest.raises(DiskNotUpToDate):
        host.promote("r0")
    assert host.promote("r0", force=True).is_primary


def test_promote_that_does_not_take_effect_is_an_error(tmpdir):
    host = drbd_9(tmpdir, drbdadm={
        "primary r0": replay(),
        "status r0": replay("9-peer-primary.status"),
    })
    with pytest.raises(DrbdError) as caught:
        host.promote("r0")
    assert "succeeded but r0 is Secondary" in caught.value.message


def test_promote_of_a_resource_that_is_not_up_says_so(tmpdir):
    host = drbd_9(tmpdir, drbdadm={"primary r0": replay(err="module-missing-9.stderr", code=20)})
    with pytest.raises(DrbdError) as caught:
        host.promote("r0")
    assert "not up on this host" in caught.value.message
    assert "drbdadm up r0" in caught.value.message


def test_demote_returns_the_state_read_back(tmpdir):
    host = drbd_9(tmpdir, drbdadm={
        "secondary r0": replay(),
        "status r0": replay("9-peer-primary.status"),
    })
    assert summary(host.demote("r0")) == STATES_9["peer-primary"]


@pytest.mark.parametrize("generation,recording", [("9", "9-secondary-down.stderr"),
                                                  ("8.4", "84-down.stderr")])
def test_demote_of_a_resource_that_is_not_up_is_done(tmpdir, generation, recording):
    answers = {"secondary r0": replay(err=recording, code=10)}
    host = drbd_9(tmpdir, drbdadm=answers) if generation == "9" else drbd_84(tmpdir, answers)
    assert summary(host.demote("r0")) == UNCONFIGURED


def test_state_on_84_asks_role_cstate_and_dstate(tmpdir):
    assert summary(drbd_84(tmpdir, queries_84("syncing")).state("r0")) == STATES_84["syncing"]


@pytest.mark.parametrize("answer", [
    replay(err="84-down.stderr", code=10),
    replay(err="module-missing-84.stderr", code=20),
    replay("84-unconfigured.role"),
], ids=["minor-not-allocated", "no-module", "unconfigured"])
def test_state_on_84_of_a_resource_that_is_not_up_is_unconfigured(tmpdir, answer):
    answers = queries_84("unconfigured")
    answers["role r0"] = answer
    assert summary(drbd_84(tmpdir, answers).state("r0")) == UNCONFIGURED


def test_state_on_9_reads_drbdsetup_json(tmpdir):
    host = drbd_9(tmpdir, drbdadm={}, drbdsetup={
        "status --json r0": replay("9-syncing.json")})
    assert summary(host.state("r0")) == STATES_9["syncing"]


@pytest.mark.parametrize("answer", [
    replay("9-down.json", "9-status-json-down.stderr", 10),
    replay(err="module-missing-9.stderr", code=20),
], ids=["no-such-resource", "no-module"])
def test_state_on_9_of_a_resource_that_is_not_up_is_unconfigured(tmpdir, answer):
    host = drbd_9(tmpdir, drbdadm={}, drbdsetup={"status --json r0": answer})
    assert summary(host.state("r0")) == UNCONFIGURED


@pytest.mark.parametrize("drbdsetup", [
    None,
    {"status --json r0": replay(err="9-status-json-unsupported.stderr", code=20)},
    {"status --json r0": replay(text="not json")},
], ids=["drbdsetup-missing", "json-unsupported", "json-unusable"])
def test_state_on_9_falls_back_to_drbdadm_status(tmpdir, drbdsetup):
    host = drbd_9(tmpdir, drbdadm={"status r0": replay("9-standalone.status")},
                  drbdsetup=drbdsetup)
    assert summary(host.state("r0")) == STATES_9["standalone"]


def test_text_fallback_for_a_resource_that_is_not_up_is_unconfigured(tmpdir):
    host = drbd_9(tmpdir, drbdadm={
        "status r0": replay("9-down.status", "9-status-down.stderr", 10)})
    assert summary(host.state("r0")) == UNCONFIGURED


def test_state_failure_names_the_resource_and_quotes_drbd(tmpdir):
    host = drbd_9(tmpdir, drbdadm={"status r9": replay(err="not-defined.stderr", code=1)})
    with pytest.raises(DrbdError) as caught:
        host.state("r9")
    assert caught.value.message.startswith("cannot read the state of r9: ")
    assert "'r9' not defined in your config (for this host)." in caught.value.message


def test_a_hung_drbd_tool_times_out_instead_of_reporting_a_state(tmpdir):
    host = drbd_84(tmpdir, {"role r0": "exec sleep 10"}, timeout=0.5)
    with pytest.raises(CommandFailed) as caught:
        host.state("r0")
    assert caught.value.timed_out


@pytest.mark.parametrize("recording,generation", [("version-84.txt", "8.4"),
                                                  ("version-9.txt", "9")])
def test_auto_version_asks_drbdadm(tmpdir, recording, generation):
    host = drbd.Drbd(drbdadm=stand_in(tmpdir, "drbdadm", {"--version": replay(recording)}))
    assert host.version() == generation


def test_auto_version_picks_the_84_queries_for_an_84_kernel(tmpdir):
    answers = queries_84("peer-primary")
    answers["--version"] = replay("version-84.txt")
    host = drbd.Drbd(drbdadm=stand_in(tmpdir, "drbdadm", answers),
                     drbdsetup=str(tmpdir.join("no-drbdsetup")))
    assert summary(host.state("r0")) == STATES_84["peer-primary"]


def test_unsupported_kernel_version_is_a_drbd_error(tmpdir):
    host = drbd.Drbd(drbdadm=stand_in(tmpdir, "drbdadm",
                                      {"--version": replay("version-83.txt")}))
    with pytest.raises(DrbdError) as caught:
        host.version()
    assert "DRBD 8.3 is not supported" in caught.value.message


def test_version_setting_must_be_known():
    with pytest.raises(BadConfig):
        drbd.Drbd(version="10")


def test_device_and_knows_use_the_drbd_configuration(tmpdir):
    host = drbd_9(tmpdir, drbdadm={
        "sh-dev r0": replay(text="/dev/drbd0"),
        "sh-dev r1": replay("sh-dev-two-volumes.txt"),
        "sh-dev r9": replay(err="not-defined.stderr", code=1),
    })
    assert host.device("r0") == "/dev/drbd0"
    assert host.device("r1") == "/dev/drbd1"
    assert host.knows("r0")
    assert not host.knows("r9")
    with pytest.raises(DrbdError) as caught:
        host.device("r9")
    assert "r9 is not defined on this host" in caught.value.message


def test_knows_reports_a_broken_configuration_instead_of_guessing(tmpdir):
    host = drbd_9(tmpdir, drbdadm={"sh-dev r0": replay(err="parse-error.stderr", code=10)})
    with pytest.raises(DrbdError) as caught:
        host.knows("r0")
    assert "r0.res:5: Parse error" in caught.value.message


def test_wrapped_suspended_flags_are_read_from_text_status():
    text = recorded("9-wrapped.status")
    suspended = drbd.parse_status_text(text, "sr-5f3c2a90-1b7e-4c41-9d2e-8a6f0e4b1c37")
    assert suspended.suspended == ["no-data", "fencing", "quorum"]
    assert drbd.parse_status_text(text, "r0").suspended == []


@pytest.mark.parametrize("fields, reasons", [
    ({"suspended": False}, []),
    ({"suspended": True}, ["yes"]),
    ({"suspended": True, "suspended-user": False, "suspended-fencing": True}, ["fencing"]),
])
def test_suspended_io_shows_in_json_status(fields, reasons):
    resource = json.loads(recorded("9-connected.json"))[0]
    resource.update(fields)
    assert drbd.parse_status_json(json.dumps([resource]), "r0").suspended == reasons


def test_the_minus_7_refusal_never_advises_force(tmpdir):
    host = drbd_84(tmpdir, {"primary r0": replay(err="84-primary-peer-not-outdated.stderr",
                                                 code=11)})
    with pytest.raises(DrbdError) as caught:
        host.promote("r0")
    assert "force" not in caught.value.message
    assert "peer_down=true only once it is known to be down" in caught.value.message


SHOW_9 = """resource "r0" {
    options {
        auto-promote            no;
    }
    connection {
        _peer_node_id 1;
        net {
            protocol            C;
            fencing             resource-only;
            allow-two-primaries no; # default
        }
    }
}
"""
SHOW_84 = """resource r0 {
    options {
    }
    net {
        protocol            A;
    }
    disk {
        fencing             resource-only;
    }
}
"""


def test_show_is_read_with_drbds_defaults_for_what_it_omits():
    assert drbd.parse_show(SHOW_9, "9") == {
        "protocol": "C", "fencing": "resource-only", "auto-promote": "no",
        "allow-two-primaries": "no"}
    assert drbd.parse_show(SHOW_84, "8.4") == {
        "protocol": "A", "fencing": "resource-only", "allow-two-primaries": "no"}
    assert drbd.parse_show("resource r0 {\n}\n", "9")["auto-promote"] == "yes"


def test_fence_peer_handler_is_read_from_drbdadm_dump():
    dump = ('resource r0 {\n    handlers {\n        fence-peer       '
            '"/usr/libexec/iscsi-ha/iscsi-ha-fence-peer --config \\"/etc/x\\"";\n'
            '    }\n}\n')
    assert drbd.parse_fence_peer(dump) == \
        '/usr/libexec/iscsi-ha/iscsi-ha-fence-peer --config "/etc/x"'
    assert drbd.parse_fence_peer("resource r0 {\n}\n") is None


def test_check_settings_flags_every_unsafe_one():
    good = {"protocol": "C", "fencing": "resource-only", "auto-promote": "no",
            "allow-two-primaries": "no"}
    ours = "/usr/libexec/iscsi-ha/iscsi-ha-fence-peer"
    assert all(ok for _, ok, _ in drbd.check_settings("r0", good, ours, "9"))
    bad = {"protocol": "A", "fencing": "dont-care", "auto-promote": "yes",
           "allow-two-primaries": "yes"}
    results = dict((name, (ok, detail)) for name, ok, detail in drbd.check_settings(
        "r0", bad, "/usr/lib/drbd/outdate-peer.sh on a a on b b", "9"))
    assert not any(ok for ok, _ in results.values())
    assert "A, but iscsi-ha needs C" in results["DRBD r0 protocol"][1]
    assert "drbdadm adjust r0" in results["DRBD r0 fencing"][1]
    assert "'/usr/lib/drbd/outdate-peer.sh" in results["DRBD r0 fence-peer handler"][1]
    # DRBD 8.4 has no auto-promote; nothing is asked of it there.
    assert "DRBD r0 auto-promote" not in [name for name, _, _ in drbd.check_settings(
        "r0", good, ours, "8.4")]
    assert not drbd.check_settings("r0", good, None, "8.4")[-1][1]


def test_outdate_maps_drbds_refusal(tmpdir):
    host = drbd_9(tmpdir, drbdadm={"outdate r0": replay(
        text="r0: State change failed: (-2) Need access to UpToDate data", code=17)})
    with pytest.raises(DrbdError) as caught:
        host.outdate("r0")
    assert type(caught.value) is DrbdError
    assert caught.value.message.startswith("cannot outdate r0: '")
    assert "(-2) Need access to UpToDate data" in caught.value.message
    assert "force" not in caught.value.message


def counting_drbdadm(directory, recording):
    """A drbdadm whose --version prints ``recording`` and logs each call."""
    log = os.path.join(str(directory), "version-calls")
    path = os.path.join(str(directory), "drbdadm")
    with open(path, "w") as handle:
        handle.write("#!/bin/sh\necho x >> %s\ncat %s\n" % (
            log, os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "drbd",
                              recording)))
    os.chmod(path, 0o755)
    return path, log


def calls(log):
    if not os.path.exists(log):
        return 0
    with open(log) as handle:
        return len(handle.read().splitlines())


def test_the_version_is_asked_once_per_drbd_installation(tmpdir):
    drbdadm, log = counting_drbdadm(tmpdir, "version-9-no-module.txt")
    cache = os.path.join(str(tmpdir), "run", "drbd-version.json")
    for _ in range(3):  # three plugin calls, each with its own Drbd
        assert drbd.Drbd(drbdadm=drbdadm, version_cache=cache).version() == "9"
    assert calls(log) == 1
    # Another drbdadm (an upgrade) is asked again.
    drbdadm, _ = counting_drbdadm(tmpdir, "version-84-no-module.txt")
    with open(drbdadm, "a") as handle:
        handle.write("# upgraded\n")
    assert drbd.Drbd(drbdadm=drbdadm, version_cache=cache).version() == "8.4"
    assert calls(log) == 2
    assert drbd.Drbd(drbdadm=drbdadm, version_cache=cache).version() == "8.4"
    assert calls(log) == 2


def test_a_damaged_version_cache_is_asked_around(tmpdir):
    drbdadm, log = counting_drbdadm(tmpdir, "version-9.txt")
    cache = os.path.join(str(tmpdir), "drbd-version.json")
    with open(cache, "w") as handle:
        handle.write("{not json")
    assert drbd.Drbd(drbdadm=drbdadm, version_cache=cache).version() == "9"
    assert drbd.Drbd(drbdadm=drbdadm, version_cache=cache).version() == "9"
    assert calls(log) == 1
    # Without a cache every object asks.
    assert drbd.Drbd(drbdadm=drbdadm).version() == "9"
    assert calls(log) == 2
