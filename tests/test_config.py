"""The config file: the sample is valid, and every mistake is reported with its fix."""

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
