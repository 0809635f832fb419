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
