# -*- coding: utf-8 -*-
"""Hostile plugin input, through the real entry file: every fn of arguments.SPECS with
hostile argument names and values, and malformed XML-RPC in argv.

What a caller may get back: the fn's result, a clear ISCSI_HA_* failure (never
ISCSI_HA_INTERNAL_ERROR), xapi's UNKNOWN_XENAPI_PLUGIN_FUNCTION, or a protocol
failure (XenAPIPlugin cannot read argv; xapi then answers XENAPI_PLUGIN_FAILURE).
A refused call changes nothing on the host (its files and its tool calls); an
accepted one does exactly what it does with a plain reason.
"""

import json
import re

import pytest
import six
from hypothesis import assume, given, settings, strategies as st
from six.moves import xmlrpc_client

from iscsi_ha import arguments
from tests.support import hostile, plugin

FNS = sorted(arguments.SPECS)
RESOURCES = ("r0",)
_BOOLEAN_WORDS = ("true", "yes", "1", "on", "false", "no", "0", "off")
_PORT = re.compile(u"^[0-9]+\\Z")
_OCTET = u"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"
_IPV4 = re.compile(u"^%s(\\.%s){3}\\Z" % (_OCTET, _OCTET))
# Free text: what the twin call gets instead, to show the text is only data.
PLAIN = u"plain words"


# -- what the plugin's documentation says it accepts (README, "Using the plugin") --------

def _connections_ok(value):
    try:
        items = json.loads(value)
    except (ValueError, RuntimeError):
        return False
    if not isinstance(items, list):
        return False
    for item in items:
        if not isinstance(item, six.string_types):
            return False
        address, _, port = item.rpartition(u":")
        if not (_IPV4.match(address) and _PORT.match(port) and 1 <= int(port) <= 65535):
            return False
    return True


def documented_ok(fn, name, value):
    """Whether the README's rules accept ``value`` for argument ``name`` of ``fn``."""
    if not isinstance(value, six.string_types):
        return False
    if name in ("force", "peer_down", "vip_released", "enabled", "await_demote", "dry_run"):
        return value.strip().lower() in _BOOLEAN_WORDS
    if name == "format":
        return value in (u"json", u"table")
    if name == "role":
        return value in (u"victim", u"survivor")
    if name == "files":
        # A list of files to install; hostile text is never one. The empty list only
        # asks a host for its config (what `iscsi-ha setup` does first).
        return value.strip() == u"[]"
    if name in ("tickle", "connections"):
        return _connections_ok(value)
    if name == "resource":
        return value in RESOURCES
    return True  # reason: any text


def bad_names(fn, args):
    """The argument names a correct plugin could name in its refusal; empty: acceptable."""
    spec = arguments.SPECS[fn]
    if not isinstance(args, dict):
        return set(["args"])
    unknown = set(six.text_type(k) for k in args if k not in spec)
    if unknown:
        return unknown
    missing = set(n for n, (_, default) in spec.items()
                  if default is arguments.REQUIRED and n not in args)
    bad = set(n for n, v in args.items() if not documented_ok(fn, n, v))
    if not (missing | bad) and _true(args.get("await_demote")) and (
            _true(args.get("peer_down")) or _true(args.get("vip_released"))):
        bad.add("await_demote")  # waits for a live peer: not with either of those
    return missing | bad


def _true(value):
    return isinstance(value, six.string_types) and value.strip().lower() in _BOOLEAN_WORDS[:4]


# -- what a hostile caller sends ---------------------------------------------------------

@st.composite
def plugin_args(draw, fn):
    args = {}
    for name in sorted(arguments.SPECS[fn]):
        kind = draw(st.sampled_from(["absent", "valid", "valid", "text", "any"]))
        if kind == "valid":
            args[name] = draw(hostile.valid_value(name))
        elif kind == "text":
            args[name] = draw(hostile.xml_text())
        elif kind == "any":
            args[name] = draw(hostile.xmlrpc_value(1))
    if draw(st.integers(0, 4)) == 0:  # now and then a name the fn does not take
        args[draw(hostile.xml_text(12))] = draw(hostile.xml_text())
    return args


def received(fn, args):
    """``args`` as the plugin reads them from XML-RPC (XML reads a carriage return as a
    line feed, for one)."""
    (_, args), _ = xmlrpc_client.loads(hostile.request(fn, args))
    return args


def call(fn, args):
    with hostile.RecordedHost() as host:
        before = host.state()
        outcome = hostile.run_entry(host, hostile.request(fn, args))
        return outcome, before, host.state()


def assert_clear(outcome):
    """A result or a clear failure: never a traceback or an internal error."""
    assert outcome.protocol_error is None, outcome
    assert "Traceback" not in outcome.stdout
    if outcome.code is not None:
        assert outcome.code.startswith("ISCSI_HA_"), outcome
        assert outcome.code != "ISCSI_HA_INTERNAL_ERROR", outcome
        assert all(isinstance(part, six.string_types) for part in
                   outcome.reply["ErrorDescription"])


def without_log(state):
    return dict(state, files=dict((k, v) for k, v in state["files"].items()
                                  if k != "iscsi-ha.log"))


def plain_twin(fn, args):
    return dict((name, PLAIN if arguments.SPECS[fn][name][0] is arguments.text
                 and name != "resource" else value) for name, value in args.items())


@pytest.mark.parametrize("fn", FNS)
def test_hostile_arguments_get_a_clear_answer_and_a_refusal_changes_nothing(fn):
    @settings(max_examples=hostile.examples())
    @given(plugin_args(fn))
    def hostile_arguments(args):
        hostile.count("hostile_arguments[%s]" % fn)
        outcome, before, after = call(fn, args)
        assert_clear(outcome)
        args = received(fn, args)
        bad = bad_names(fn, args)
        if bad:
            assert outcome.code == "ISCSI_HA_BAD_ARGUMENT", (args, outcome)
            assert outcome.reply["ErrorDescription"][2] in bad
            assert without_log(after) == without_log(before)
            return
        assert outcome.code != "ISCSI_HA_BAD_ARGUMENT", (args, outcome)
        if outcome.code is None and not (fn == "status" and args.get("format") == "table"):
            json.loads(outcome.reply["Value"])
        twin, _, twin_after = call(fn, plain_twin(fn, args))
        assert twin.code == outcome.code
        # The same calls; not always in the same order, as the duplicate-address check
        # runs beside the other reads (commands.Background).
        assert sorted(twin_after["calls"]) == sorted(after["calls"])
        assert sorted(twin_after["files"]) == sorted(after["files"])
    hostile_arguments()


@settings(max_examples=hostile.examples())
@given(st.sampled_from(FNS), hostile.xmlrpc_value(2))
def test_arguments_that_are_no_map_are_a_bad_argument(fn, args):
    hostile.count("arguments_that_are_no_map_are_a_bad_argument")
    outcome, before, after = call(fn, args if not isinstance(args, dict) else [args])
    assert_clear(outcome)
    assert outcome.code == "ISCSI_HA_BAD_ARGUMENT"
    assert outcome.reply["ErrorDescription"][2] == "args"
    assert without_log(after) == without_log(before)


# -- malformed XML-RPC in argv -----------------------------------------------------------

def _mutated(text, data):
    """``text`` cut, with a part repeated, or with characters put in."""
    position = data.draw(st.integers(0, len(text)))
    how = data.draw(st.sampled_from(["cut", "insert", "repeat"]))
    if how == "cut":
        return text[:position]
    if how == "insert":
        return text[:position] + data.draw(hostile.xml_text(8)) + text[position:]
    end = data.draw(st.integers(position, len(text)))
    return text[:end] + text[position:end] + text[end:]


@st.composite
def malformed_calls(draw):
    fn = draw(st.one_of(st.sampled_from(FNS), hostile.xml_text(12)))
    kind = draw(st.sampled_from(["params", "mutated", "text"]))
    if kind == "params":  # well-formed XML-RPC, but not (session, args)
        params = draw(st.lists(hostile.xmlrpc_value(1), max_size=3).map(tuple))
        return xmlrpc_client.dumps(params, fn, allow_none=True)
    if kind == "mutated":
        valid = hostile.request(draw(st.sampled_from(FNS)), {"reason": u"x"})
        return _mutated(valid, draw(st.data()))
    return draw(hostile.xml_text(200))


def assert_protocol_or_clear(outcome):
    if outcome.protocol_error is not None:
        # XenAPIPlugin itself could not read argv: a non-zero exit before any of the
        # plugin's code ran, and nothing printed.
        assert outcome.stdout == ""
        return
    if outcome.code == "UNKNOWN_XENAPI_PLUGIN_FUNCTION":
        return
    assert_clear(outcome)


@settings(max_examples=hostile.examples())
@given(malformed_calls())
def test_malformed_xmlrpc_in_argv_is_a_protocol_failure_or_a_clear_answer(argv1):
    hostile.count("malformed_xmlrpc_in_argv_is_a_protocol_failure_or_a_clear_answer")
    with hostile.RecordedHost() as host:
        before = host.changes()
        outcome = hostile.run_entry(host, argv1)
        assert_protocol_or_clear(outcome)
        if outcome.reply is None or outcome.code is not None:
            assert host.changes() == before


# -- a smaller set through the real process protocol ------------------------------------

@st.composite
def any_call(draw):
    fn = draw(st.sampled_from(FNS))
    return fn, draw(plugin_args(fn))


@settings(max_examples=hostile.examples(0.2))
@given(any_call())
def test_hostile_arguments_through_the_plugin_process(call_):
    hostile.count("hostile_arguments_through_the_plugin_process")
    fn, args = call_
    argv1 = hostile.request(fn, args)
    # Linux takes no argument over 128 KiB (MAX_ARG_STRLEN): xapi could not pass it either.
    assume(len(argv1.encode("utf-8")) < 128 * 1024)
    with hostile.RecordedHost() as host:
        host.write_tools()
        before = host.state()
        env = plugin.plugin_env(host.config_path, {"LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"})
        reply = plugin.run(argv1, env=env)
        assert reply.returncode == 0, reply
        assert "Traceback" not in reply.stdout + reply.stderr
        outcome = hostile.Outcome(plugin.decode(reply.raw), stdout=reply.stdout)
        assert_clear(outcome)
        if bad_names(fn, received(fn, args)):
            assert outcome.code == "ISCSI_HA_BAD_ARGUMENT", (args, outcome)
            assert without_log(host.state()) == without_log(before)


def test_a_line_break_in_a_reason_forges_no_log_line():
    # Found with the hostile-input tests: the reason went to the log as it came.
    with hostile.RecordedHost() as host:
        forged = u"disk swap\n2026-12-03 00:00:00,000 1 WARNING promote: done"
        outcome = hostile.run_entry(host, hostile.request("manual-mode", {
            "enabled": "true", "reason": forged}))
        assert outcome.code is None, outcome
        with open(host.directory + "/iscsi-ha.log", "rb") as log:
            lines = log.read().decode("utf-8").splitlines()
    assert len(lines) == 1
    assert lines[0].endswith(u"manual mode on (reason: disk swap\\n2026-12-03 00:00:00,000 "
                             u"1 WARNING promote: done)")
