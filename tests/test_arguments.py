"""Plugin arguments: strings in, checked values out, clear errors naming the argument."""

import pytest

from iscsi_ha import arguments
from iscsi_ha.arguments import REQUIRED, boolean, one_of, text
from iscsi_ha.errors import BadArgument

SPEC = {"force": (boolean, False), "reason": (text, ""), "format": (one_of("json", "table"), "json")}


def test_defaults_fill_in_what_was_not_given():
    assert arguments.parse("fn", {}, SPEC) == {"force": False, "reason": "", "format": "json"}


@pytest.mark.parametrize("given,expected", [("true", True), ("YES", True), ("1", True),
                                            ("false", False), ("no", False), ("0", False)])
def test_booleans_accept_the_usual_spellings(given, expected):
    assert arguments.parse("fn", {"force": given}, SPEC)["force"] is expected


def test_a_bad_value_names_the_argument_and_the_fix():
    with pytest.raises(BadArgument) as caught:
        arguments.parse("promote", {"force": "banana"}, SPEC)
    assert caught.value.code == "ISCSI_HA_BAD_ARGUMENT"
    assert caught.value.message == ("fn=promote argument force='banana' is not valid: "
                                    "use true or false")
    assert caught.value.details == ["force"]


def test_an_unknown_argument_lists_the_allowed_ones():
    with pytest.raises(BadArgument) as caught:
        arguments.parse("demote", {"forse": "true"}, SPEC)
    assert "does not take argument 'forse'; allowed: force, format, reason" in caught.value.message


def test_a_required_argument_must_be_given():
    with pytest.raises(BadArgument) as caught:
        arguments.parse("manual-mode", {}, {"enabled": (boolean, REQUIRED)})
    assert "needs argument enabled" in caught.value.message


def test_a_connection_list_is_json_ip_port_strings_without_duplicates():
    spec = arguments.SPECS["promote"]
    parsed = arguments.parse("promote", {"tickle": '["192.0.2.50:41000", "192.0.2.51:1", '
                                                   '"192.0.2.50:41000"]'}, spec)
    assert parsed["tickle"] == ["192.0.2.50:41000", "192.0.2.51:1"]
    assert list(arguments.parse("promote", {}, spec)["tickle"]) == []


@pytest.mark.parametrize("value, why", [
    ("192.0.2.50:41000", "not JSON"),
    ('{"a": 1}', "not a list"),
    ('["192.0.2.50"]', '"192.0.2.50" is not ip:port'),
    ('["192.0.2.50:65536"]', "is not ip:port"),
    ('["192.0.2.050:1"]', "is not ip:port"),
    ("[41000]", "41000 is not ip:port"),
])
def test_a_bad_connection_list_names_the_argument_and_the_form(value, why):
    with pytest.raises(BadArgument) as caught:
        arguments.parse("promote", {"tickle": value}, arguments.SPECS["promote"])
    assert caught.value.details == ["tickle"]
    assert why in caught.value.message
    assert 'use a JSON list of "ip:port" strings' in caught.value.message


def test_every_plugin_function_has_a_spec():
    assert sorted(arguments.SPECS) == ["check", "demote", "install-files", "manual-mode",
                                       "outdate", "promote", "remember-initiators",
                                       "resolve-split-brain", "status", "version"]



# Found by the hostile-input tests (tests/test_hostile_plugin.py): argv is XML-RPC, so a
# caller other than xapi can send numbers, nil, lists or no map at all.
@pytest.mark.parametrize("value, kind", [(5, "an int"), (None, "nil"),
                                         (["true"], "a list"), (True, "a bool")])
def test_a_value_that_is_not_a_string_is_a_bad_argument_naming_it(value, kind):
    with pytest.raises(BadArgument) as caught:
        arguments.parse("promote", {"force": value}, arguments.SPECS["promote"])
    assert caught.value.details == ["force"]
    assert "fn=promote argument force is %s, not a string" % kind \
        in caught.value.message


@pytest.mark.parametrize("args", [["force"], "force", 5, None])
def test_arguments_that_are_not_a_map_are_a_bad_argument(args):
    with pytest.raises(BadArgument) as caught:
        arguments.parse("promote", args, arguments.SPECS["promote"])
    assert caught.value.details == ["args"]
    assert "takes its arguments as a map of strings (args:NAME=VALUE)" in caught.value.message


def test_an_argument_name_that_is_not_a_string_is_a_bad_argument():
    with pytest.raises(BadArgument) as caught:
        arguments.parse("demote", {5: "x", "reason": "y"}, arguments.SPECS["demote"])
    assert caught.value.details == ["5"]
    assert "argument name 5 is an int, not a string" in caught.value.message


def test_a_connection_list_nested_deeper_than_python_recurses_is_a_bad_argument():
    # Found by the hostile-input tests: json.loads raised RecursionError (RuntimeError on
    # 2.7), which the plugin reported as ISCSI_HA_INTERNAL_ERROR.
    with pytest.raises(BadArgument) as caught:
        arguments.parse("promote", {"tickle": "[" * 100000}, arguments.SPECS["promote"])
    assert caught.value.details == ["tickle"]
    assert "JSON nested too deep" in caught.value.message
