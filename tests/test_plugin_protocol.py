# -*- coding: utf-8 -*-
"""The plugin file run as xapi runs it: XML-RPC methodCall in, methodResponse out."""

import io
import json

import pytest

from iscsi_ha import config as config_module
from tests.support import plugin


def assert_no_traceback(reply):
    assert "Traceback" not in reply.stdout
    assert "Traceback" not in reply.stderr


def test_unknown_function_is_xapis_unknown_plugin_function_failure():
    reply = plugin.call("nosuch", {})
    assert reply.status == "Failure"
    assert reply.error == ["UNKNOWN_XENAPI_PLUGIN_FUNCTION", "nosuch"]
    assert_no_traceback(reply)


@pytest.mark.parametrize("argument", ["force", "peer_down"])
def test_promote_with_a_bad_flag_value_is_a_bad_argument_failure(tmp_path, argument):
    reply = plugin.call("promote", {argument: "banana"},
                        config_path=str(tmp_path / "never-read.conf"))
    assert reply.status == "Failure"
    assert reply.error[0] == "ISCSI_HA_BAD_ARGUMENT"
    assert "%s='banana'" % argument in reply.error[1]
    assert reply.error[2] == argument
    assert_no_traceback(reply)


def test_outdate_needs_its_resource_argument(tmp_path):
    reply = plugin.call("outdate", {}, config_path=str(tmp_path / "never-read.conf"))
    assert reply.error[0] == "ISCSI_HA_BAD_ARGUMENT"
    assert "needs argument resource" in reply.error[1]
    assert_no_traceback(reply)


def test_unknown_argument_is_refused_before_anything_is_read(tmp_path):
    reply = plugin.call("demote", {"reasn": "typo"}, config_path=str(tmp_path / "none.conf"))
    assert reply.error[0] == "ISCSI_HA_BAD_ARGUMENT"
    assert "does not take argument 'reasn'; allowed: reason" in reply.error[1]


def test_version_answers_json_with_the_python_it_runs_on():
    reply = plugin.call("version")
    assert reply.ok
    answer = json.loads(reply.value)
    assert answer["version"] == "0.1.0"
    assert answer["python"].count(".") == 2


def test_missing_config_is_a_bad_config_failure_naming_the_path(tmp_path):
    path = str(tmp_path / "absent.conf")
    reply = plugin.call("status", {}, config_path=path)
    assert reply.error[0] == "ISCSI_HA_BAD_CONFIG"
    assert path in reply.error[1]
    assert_no_traceback(reply)


def test_bad_config_lists_every_problem(tmp_path):
    path = tmp_path / "bad.conf"
    path.write_text(config_module.render_sample(iqn="nope", vip="300.1.1.1/24"))
    reply = plugin.call("promote", {}, config_path=str(path))
    assert reply.error[0] == "ISCSI_HA_BAD_CONFIG"
    assert "has 2 problems" in reply.error[1]
    assert any(p.startswith("[vip] address") for p in reply.error[2:])
    assert_no_traceback(reply)


def write_config(tmp_path, **tools):
    path = tmp_path / "c.conf"
    all_tools = dict(config_module.SAMPLE_VALUES["tools"])
    all_tools.update(tools)
    path.write_text(config_module.render_sample(tools=all_tools, state_dir=str(tmp_path),
                                                log_file=str(tmp_path / "log")))
    return str(path)


def test_a_missing_tool_is_named_with_the_fix(tmp_path):
    reply = plugin.call("status", {}, config_path=write_config(
        tmp_path, drbdadm="/nonexistent/drbdadm"))
    assert reply.error[0] == "ISCSI_HA_TOOL_MISSING"
    assert reply.error[1].startswith("/nonexistent/drbdadm: cannot run it")
    assert "[tools]" in reply.error[1]
    assert_no_traceback(reply)


def test_check_reports_every_missing_tool_and_changes_nothing(tmp_path):
    missing = dict((tool, "/nonexistent/" + tool) for tool in config_module.TOOLS)
    reply = plugin.call("check", {}, config_path=write_config(tmp_path, **missing))
    assert reply.ok
    answer = json.loads(reply.value)
    assert answer["ok"] is False
    failed = set(c["check"] for c in answer["checks"] if not c["ok"])
    assert set("tool %s" % tool for tool in config_module.TOOLS) <= failed
    assert "tgtd" in failed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.conf", "log"]


def test_utf8_config_and_reasons_work_without_a_locale(tmp_path):
    # xapi may start plugins with no locale set; Python 3.6 then defaults to ASCII.
    path = write_config(tmp_path, **dict((tool, "/nonexistent/" + tool)
                                         for tool in config_module.TOOLS))
    with io.open(path, "a", encoding="utf-8") as handle:
        handle.write(u"# Stockage répliqué, géré par l'équipe système\n")
    no_locale = plugin.plugin_env(path, {"LC_ALL": "C", "LANG": "C"})
    no_locale.pop("PYTHONIOENCODING", None)
    reply = plugin.call("check", {}, env=no_locale)
    assert reply.ok, reply.error
    reply = plugin.call("manual-mode", {"enabled": "true", "reason": "disk swap"},
                        env=no_locale)
    assert reply.ok, reply.error
    # Non-ASCII in argv itself needs a UTF-8 locale (XenAPIPlugin decodes argv[1]).
    utf8 = plugin.plugin_env(path, {"LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"})
    reply = plugin.call("manual-mode", {"enabled": "false", "reason": u"réparation du disque"},
                        env=utf8)
    assert reply.ok, reply.error
    with io.open(str(tmp_path / "log"), encoding="utf-8") as log:
        assert u"manual mode off (reason: réparation du disque)" in log.read()


def test_a_non_ascii_argument_name_is_a_bad_argument(tmp_path):
    env = plugin.plugin_env(str(tmp_path / "none.conf"), {"LC_ALL": "C.UTF-8",
                                                          "LANG": "C.UTF-8"})
    reply = plugin.call("demote", {u"réason": "x"}, env=env)
    assert reply.error[0] == "ISCSI_HA_BAD_ARGUMENT"
    assert reply.error[2] == u"réason"
    assert_no_traceback(reply)
