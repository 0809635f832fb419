"""The config file: the sample is valid, and every mistake is reported with its fix."""

import os

import pytest

from iscsi_ha import config
from iscsi_ha.errors import BadConfig


def sample(**overrides):
    return config.render_sample(**overrides)


def problems_of(text):
    with pytest.raises(BadConfig) as caught:
        config.parse(text, "test.conf")
    return caught.value.details


def test_rendered_sample_is_a_valid_config():
    parsed = config.parse(sample(), "sample.conf")
    assert parsed.iqn == "iqn.2026-01.com.example:iscsi-ha"
    assert (parsed.vip_address, parsed.vip_prefix) == ("192.0.2.100", 24)
    assert [(r.name, r.device, r.lun) for r in parsed.resources] == [
        ("iscsi1", "/dev/drbd1", 1)]
    assert parsed.tools["tgtadm"] == "tgtadm"


def test_every_problem_is_reported_at_once_with_key_and_fix():
    text = sample(iqn="not-an-iqn", vip="192.0.2.300/24", vip_interface="has space",
                  drbd_version="7")
    found = problems_of(text)
    assert len(found) == 4
    joined = "\n".join(found)
    assert "[target] iqn: 'not-an-iqn' is not an iSCSI qualified name; use the form" in joined
    assert "[vip] address: '192.0.2.300/24' must be an IPv4 address" in joined
    assert "[vip] interface: 'has space'" in joined
    assert "[replication] drbd_version: '7'; use one of auto, 8.4, 9" in joined


def test_missing_and_unknown_keys_and_sections_are_named():
    text = sample().replace("iqn = ", "iqn_typo = ") + "\n[extra]\nkey = 1\n"
    joined = "\n".join(problems_of(text))
    assert "[target] iqn: missing" in joined
    assert "[target] iqn_typo: unknown key; valid keys are" in joined
    assert "[extra]: unknown section" in joined


def test_resources_need_distinct_luns_and_scsi_identities():
    resources = [
        {"name": "r0", "device": "/dev/drbd0", "lun": 1, "scsi_id": "abc", "scsi_sn": "S1"},
        {"name": "r1", "device": "/dev/drbd1", "lun": 1, "scsi_id": "abc", "scsi_sn": "S2"},
    ]
    joined = "\n".join(problems_of(sample(resources=resources)))
    assert "[resource r1] lun: 1 is also used by [resource r0]" in joined
    assert "[resource r1] scsi_id: abc is also used by [resource r0]" in joined


def test_scsi_identity_limits_are_enforced():
    resources = [{"name": "r0", "device": "drbd0", "lun": 0, "scsi_id": "vol-x",
                   "scsi_sn": "a,b", "vendor_id": "TOOLONGVENDOR"},
                  {"name": "r1", "device": "/dev/drbd1", "lun": 2, "scsi_id": "f" * 32,
                   "scsi_sn": "S2"}]
    joined = "\n".join(problems_of(sample(resources=resources)))
    assert "[resource r0] device: 'drbd0' must be an absolute path" in joined
    assert "[resource r0] lun: '0' must be a whole number from 1 to 255" in joined
    assert "[resource r0] scsi_id: 'vol-x' must be 1 to 31 hexadecimal digits" in joined
    assert "[resource r1] scsi_id: '%s' must be 1 to 31 hexadecimal digits" % ("f" * 32) in joined
    assert "[resource r0] scsi_sn: 'a,b'" in joined
    assert "[resource r0] vendor_id: 'TOOLONGVENDOR'" in joined


def test_a_config_without_resources_is_refused():
    text = sample(resources=[])
    assert any("no resource configured" in p for p in problems_of(text))


def test_not_ini_at_all_is_a_clear_error():
    with pytest.raises(BadConfig) as caught:
        config.parse("this is not ini\n", "junk.conf")
    assert "junk.conf is not valid INI" in caught.value.message


def test_missing_file_names_the_path_and_the_variable(tmp_path):
    with pytest.raises(BadConfig) as caught:
        config.load(str(tmp_path / "nope.conf"))
    assert "nope.conf" in caught.value.message
    assert "ISCSI_HA_CONF" in caught.value.message


def test_digest_covers_pool_wide_settings_only():
    base = config.parse(sample(), "a")
    local_change = config.parse(sample(vip_interface="eth9", state_dir="/tmp/x",
                                       tgt_control_port=7), "b")
    pool_change = config.parse(sample(vip="192.0.2.101/24"), "c")
    assert base.digest() == local_change.digest()
    assert base.digest() != pool_change.digest()


def test_config_path_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("ISCSI_HA_CONF", "/somewhere/else.conf")
    assert config.config_path() == "/somewhere/else.conf"
    monkeypatch.delenv("ISCSI_HA_CONF")
    assert config.config_path() == "/etc/iscsi-ha/iscsi-ha.conf"


def test_check_command_reports_validity(tmp_path, capsys):
    path = tmp_path / "c.conf"
    path.write_text(sample().replace("tid = 1", "tid = zero"))
    assert config.main(["check", str(path)]) == 1
    assert "[target] tid: 'zero' must be a whole number" in capsys.readouterr().err
    path.write_text(sample())
    assert config.main(["check", str(path)]) == 0
    assert "valid" in capsys.readouterr().out


def test_host_uuid_comes_from_the_dom0_inventory(tmp_path):
    inventory = tmp_path / "xensource-inventory"
    inventory.write_text(u"PRODUCT_BRAND='XCP-ng'\nINSTALLATION_UUID='8d1f6c2e-0000-4000-8000-000000000001'\n")
    parsed = config.parse(sample(inventory=str(inventory)), "c")
    assert parsed.host_uuid() == "8d1f6c2e-0000-4000-8000-000000000001"
    missing = config.parse(sample(inventory=str(tmp_path / "none")), "c")
    assert missing.host_uuid() is None


def test_values_must_be_plain_ascii():
    text = sample(vip_interface=u"br\u00e9", state_dir=u"/var/run/d\u00e9mo")
    joined = u"\n".join(problems_of(text))
    assert u"[vip] interface: 'br\u00e9' must be plain ASCII" in joined
    assert u"[host] state_dir: '/var/run/d\u00e9mo' must be plain ASCII" in joined


def test_a_section_given_twice_is_named_with_its_lines():
    text = sample() + "\n[target]\ntid = 2\n"
    lines = text.splitlines()
    first, again = lines.index("[target]") + 1, len(lines)
    assert problems_of(text) == [
        "[target]: appears again at line %d (first at line %d); put all its keys in one "
        "section" % (again - 1, first),
        "[target] tid: set again at line %d (first at line %d); keep one"
        % (again, lines.index("tid = 1") + 1)]


def test_a_key_given_twice_is_named_with_its_lines():
    text = sample().replace("tid = 1\n", "tid = 1\ntid = 2\n")
    line = text.splitlines().index("tid = 1") + 1
    assert problems_of(text) == [
        "[target] tid: set again at line %d (first at line %d); keep one" % (line + 1, line)]


@pytest.mark.parametrize("comment", [" # the first target", " ; the first target",
                                     "\t# tab", " #"])
def test_an_inline_comment_is_refused_on_every_python(comment):
    text = sample().replace("tid = 1\n", "tid = 1%s\n" % comment)
    line = text.splitlines().index("tid = 1" + comment) + 1
    assert problems_of(text) == [
        "[target] tid: '1%s' (line %d) holds a comment; put comments on their own line"
        % (comment.rstrip(), line)]


def test_comment_characters_inside_a_word_are_part_of_the_value():
    parsed = config.parse(sample().replace("log_file = /var/log/iscsi-ha.log",
                                           "log_file = /var/log/iscsi#ha;1.log"))
    assert parsed.log_file == "/var/log/iscsi#ha;1.log"


@pytest.mark.parametrize("line, complaint", [
    ("  tid = 2", "is indented, which would continue the value above"),
    ("just words", "is neither [section], key = value nor a comment"),
    ("= 5", "is neither [section], key = value nor a comment"),
    ("[target] # main", "is neither [section], key = value nor a comment"),
])
def test_lines_that_are_not_ini_are_named(line, complaint):
    text = sample().replace("tid = 1\n", "tid = 1\n%s\n" % line)
    number = text.splitlines().index(line) + 1
    with pytest.raises(BadConfig) as caught:
        config.parse(text, "odd.conf")
    assert caught.value.message == "odd.conf is not valid INI: line %d: '%s' %s" % (
        number, line.strip(), caught.value.message.split("' ", 1)[1])
    assert complaint in caught.value.message


def test_a_key_before_any_section_is_named():
    with pytest.raises(BadConfig) as caught:
        config.parse("tid = 1\n" + sample(), "early.conf")
    assert ("early.conf is not valid INI: line 1: 'tid = 1' comes before any [section]"
            in caught.value.message)


def test_indented_comments_and_windows_line_ends_are_fine():
    text = sample().replace("tid = 1\n", "tid = 1\n    # indented comment\n")
    assert config.parse(text.replace("\n", "\r\n")).tid == 1


def test_initiators_are_all_or_addresses_and_networks():
    assert config.parse(sample()).initiators == ["ALL"]
    parsed = config.parse(sample(initiators="192.0.2.11 198.51.100.0/24"))
    assert parsed.initiators == ["192.0.2.11", "198.51.100.0/24"]


@pytest.mark.parametrize("initiators, bad", [
    ("ALL 192.0.2.11", "ALL already allows every initiator"),
    ("192.0.2.11 192.0.2.012", "'192.0.2.012' must be an IPv4 address"),
    ("192.0.2.11 host-b", "'host-b' must be an IPv4 address"),
    ("192.0.2.1/24", "'192.0.2.1/24' has host bits set; write the network as 192.0.2.0/24"),
])
def test_a_bad_initiator_word_is_named(initiators, bad):
    [problem] = problems_of(sample(initiators=initiators))
    assert problem.startswith("[target] initiators: ")
    assert bad in problem


@pytest.mark.parametrize("key", ["lock_wait", "command", "fence", "fence_confirmed",
                                 "takeover_peer"])
@pytest.mark.parametrize("value", ["inf", "nan", "1e999", "-1", "0"])
def test_every_timeout_must_be_a_finite_positive_number(key, value):
    text = sample()
    default = [line for line in text.splitlines() if line.startswith(key + " = ")][0]
    assert problems_of(text.replace(default, "%s = %s" % (key, value))) == [
        "[timeouts] %s: '%s' must be a number of seconds above 0 and at most 86400, such "
        "as 10 or 2.5" % (key, value)]


def test_the_vip_address_is_a_strict_dotted_quad():
    assert problems_of(sample(vip="192.0.2.010/24"))[0].startswith(
        "[vip] address: '192.0.2.010/24' must be an IPv4 address with prefix length")


def test_persistent_and_boot_scoped_state_have_their_own_directories():
    parsed = config.parse(sample())
    assert parsed.state_dir == "/var/lib/iscsi-ha"
    assert parsed.run_dir == "/run/iscsi-ha"
    assert parsed.manual_mode_path == "/var/lib/iscsi-ha/manual-mode"
    assert parsed.lock_path == "/run/iscsi-ha/action.lock"
    assert parsed.announcer_pid_path == "/run/iscsi-ha/arp-announcer.pid"
    assert parsed.peer_down_marker_path("iscsi1") == "/run/iscsi-ha/peer-down.iscsi1"
    moved = config.parse(sample(state_dir="/srv/state", run_dir="/dev/shm/iha"))
    assert moved.manual_mode_path == "/srv/state/manual-mode"
    assert moved.lock_path == "/dev/shm/iha/action.lock"
    assert problems_of(sample(run_dir="run")) == [
        "[host] run_dir: 'run' must be an absolute path"]


def test_a_config_from_before_the_new_keys_is_still_valid():
    text = sample()
    for line in ("fence = 10\n", "run_dir = /run/iscsi-ha\n", "write_cache = off\n"):
        text = text.replace(line, "")
    text = text[:text.index("[xapi]")] + text[text.index("# One section per DRBD"):]
    parsed = config.parse(text)
    assert (parsed.fence_timeout, parsed.run_dir, parsed.xapi_url) == (
        10.0, "/run/iscsi-ha", "local")
    assert parsed.resources[0].write_cache is False


def resource(**overrides):
    values = {"name": "iscsi1", "device": "/dev/drbd1", "lun": 1, "scsi_id": "1fa0c0de0001",
              "scsi_sn": "IHA-ISCSI1"}
    values.update(overrides)
    return values


def test_write_cache_is_part_of_the_pool_wide_identity():
    off = config.parse(sample())
    on = config.parse(sample(resources=[resource(write_cache="on")]))
    assert off.resources[0].write_cache is False
    assert on.resources[0].write_cache is True
    assert on.resources[0].identity()["write_cache"] is True
    assert on.digest() != off.digest()
    assert problems_of(sample(resources=[resource(write_cache="yes")])) == [
        "[resource iscsi1] write_cache: 'yes' must be on or off"]


def test_xapi_settings_default_to_the_local_socket_as_root():
    parsed = config.parse(sample())
    assert (parsed.xapi_url, parsed.xapi_username, parsed.xapi_password_file) == (
        "local", "root", None)


def test_xapi_settings_are_host_local_and_checked():
    remote = config.parse(sample(xapi_url="https://192.0.2.1", xapi_username="iha",
                                 xapi_password_file="/etc/iscsi-ha/xapi.password"))
    assert (remote.xapi_url, remote.xapi_username, remote.xapi_password_file) == (
        "https://192.0.2.1", "iha", "/etc/iscsi-ha/xapi.password")
    assert remote.digest() == config.parse(sample()).digest()
    found = problems_of(sample(xapi_url="xapi.example.com", xapi_username="a b",
                               xapi_password_file="xapi.password"))
    assert found == [
        "[xapi] url: 'xapi.example.com' must be an http or https URL, such as "
        "https://192.0.2.1 or https://xcp-a.example.com:443; or write local for this "
        "host's own xapi",
        "[xapi] username: 'a b' must be a XAPI user name without spaces, such as root",
        "[xapi] password_file: 'xapi.password' must be an absolute path"]


def test_the_fence_timeout_is_its_own_setting():
    assert config.parse(sample()).fence_timeout == 10.0
    assert config.parse(sample().replace("fence = 10", "fence = 4.5")).fence_timeout == 4.5


def test_the_confirmed_fence_wait_is_its_own_setting_and_at_most_the_full_one():
    parsed = config.parse(sample())
    assert (parsed.fence_confirmed_timeout, parsed.fence_timeout) == (0.2, 10.0)
    shorter = sample().replace("fence_confirmed = 0.2", "fence_confirmed = 0.05")
    assert config.parse(shorter).fence_confirmed_timeout == 0.05
    assert problems_of(sample().replace("fence = 10", "fence = 0.1")) == [
        "[timeouts] fence_confirmed: 0.2 s is longer than [timeouts] fence (0.1 s); it is "
        "the shorter wait for a host already found down, make it at most 0.1"]
    without = sample().replace("fence_confirmed = 0.2\n", "")
    assert config.parse(without).fence_confirmed_timeout == 0.2


def test_the_takeover_wait_for_the_old_master_is_its_own_setting_and_at_most_peer():
    parsed = config.parse(sample())
    assert (parsed.takeover_peer_timeout, parsed.peer_timeout) == (0.5, 10.0)
    assert problems_of(sample().replace("peer = 10", "peer = 0.3")) == [
        "[timeouts] takeover_peer: 0.5 s is longer than [timeouts] peer (0.3 s); it is "
        "the shorter wait for a host already found down, make it at most 0.3"]


def test_scsi_ids_differing_only_in_case_are_the_same_naa_identifier():
    joined = "\n".join(problems_of(sample(resources=[
        resource(), resource(name="iscsi2", device="/dev/drbd2", lun=2, scsi_sn="S2",
                             scsi_id="1FA0C0DE0001")])))
    assert "[resource iscsi2] scsi_id: 1FA0C0DE0001 is also used by [resource iscsi1]" in joined


def test_two_first_callers_may_race_to_create_a_directory(tmp_path, monkeypatch):
    path = str(tmp_path / "a" / "run")
    real_makedirs = os.makedirs

    def beaten_to_it(name, *args, **kwargs):
        real_makedirs(name)  # the other caller wins the race
        real_makedirs(name, *args, **kwargs)
    monkeypatch.setattr(os, "makedirs", beaten_to_it)
    config.ensure_directory(path, "[host] run_dir")
    assert os.path.isdir(path)


def test_a_directory_that_cannot_be_made_is_a_config_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text(u"")
    with pytest.raises(BadConfig) as caught:
        config.ensure_directory(str(blocker / "sub"), "[host] state_dir")
    assert "make [host] state_dir a writable directory" in caught.value.message
