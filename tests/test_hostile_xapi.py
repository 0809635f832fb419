# -*- coding: utf-8 -*-
"""Hostile XAPI answers to the controller and the CLI: records with fields missing or of
the wrong type, plugin answers that are not the status a plugin gives, broken events.

observe.PoolClient runs for real over a session whose answers a test mutates. What
may come of a pass: a snapshot and a plan, or NotMaster / XapiLost (the daemon
then logs in afresh; the CLI says ISCSI_HA_NO_MASTER / ISCSI_HA_XAPI_UNREACHABLE).
A host whose status answer is malformed counts as not answering with
ISCSI_HA_BAD_ANSWER, so nothing is decided from it. Never another exception.
"""

import copy
import json

import pytest
import six

from hypothesis import given, settings, strategies as st
from six.moves import xmlrpc_client

from iscsi_ha_controller import answers as answer_rules, cli, daemon, decide
from iscsi_ha_controller.observe import NotMaster, PoolClient, XapiLost
from tests.support import hostile
from tests.test_cli import HOSTS, status
from tests.test_daemon import make_config

OWN_UUID = "uuid-a"


def good_answers():
    """What a healthy two-host pool's master xapi answers, per method."""
    hosts, metrics = {}, {}
    for ref, name, uuid, address in HOSTS:
        hosts[ref] = {"uuid": uuid, "name_label": name, "hostname": name,
                      "address": address, "metrics": ref + "-metrics"}
        metrics[ref + "-metrics"] = {"uuid": uuid + "-m", "live": True}
    return {
        "pool.get_all_records": {"OpaqueRef:pool": {
            "uuid": "pool-uuid", "name_label": "lab", "master": "OpaqueRef:a",
            "other_config": {}, "ha_enabled": False}},
        "host.get_all_records": hosts,
        "host_metrics.get_all_records": metrics,
        "event.from": {"token": "1", "valid_ref_counts": {}, "events": [
            {"id": "1", "class": "pool", "operation": "mod", "ref": "OpaqueRef:pool",
             "snapshot": {"master": "OpaqueRef:a", "other_config": {}}},
            {"id": "2", "class": "host_metrics", "operation": "mod",
             "ref": "OpaqueRef:a-metrics", "snapshot": {"live": True}}]},
        "status hostA": status("hostA", "secondary"),
        "status hostB": status("hostB", "primary"),
    }


class Session(object):
    """A XenAPI session stand-in: ``xenapi.<method>(...)`` answers from ``answers``."""

    class _Transport(object):
        timeout = None

    def __init__(self, answers):
        self.answers = answers
        self.transport = self._Transport()
        self._session = "OpaqueRef:session"
        self.xenapi = _Methods(self, "")


class _Methods(object):
    def __init__(self, session, prefix):
        self._session_ = session
        self._prefix = prefix

    def __getattr__(self, name):
        return _Methods(self._session_, self._prefix + "." + name if self._prefix else name)

    def __call__(self, *args):
        answers = self._session_.answers
        if self._prefix == "host.call_plugin":
            name = dict((ref, n) for ref, n, _, _ in HOSTS).get(args[0])
            answer = answers["status " + name]
            # A plugin answers JSON text; a test may put any value there instead.
            return json.dumps(answer, default=repr) if not isinstance(answer, _Raw) else answer.value
        return copy.deepcopy(answers[self._prefix])


class _Raw(object):
    """A call_plugin answer sent as it is, not as JSON."""

    def __init__(self, value):
        self.value = value

    def __repr__(self):
        return "_Raw(%r)" % (self.value,)


class Client(PoolClient):
    """The real PoolClient over :class:`Session`; its siblings share the session."""

    def __init__(self, config, answers):
        PoolClient.__init__(self, config)
        self.session = Session(answers)

    def sibling(self):
        other = Client(self.config, self.session.answers)
        other.pool_uuid = self.pool_uuid
        return other


# -- mutations of a good answer ----------------------------------------------------------

def _paths(value, prefix=()):
    """Every path (tuple of keys/indexes) into ``value``, the root included."""
    yield prefix
    if isinstance(value, dict):
        for key in sorted(value, key=repr):
            for path in _paths(value[key], prefix + (key,)):
                yield path
    elif isinstance(value, list):
        for index, item in enumerate(value):
            for path in _paths(item, prefix + (index,)):
                yield path


def _apply(answers, path, how, replacement):
    if not path[1:]:
        answers[path[0]] = _Raw(replacement) if path[0].startswith("status") and \
            how == "raw" else replacement
        return
    parent = answers
    for key in path[:-1]:
        parent = parent[key]
    if how == "delete" and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = replacement


@st.composite
def hostile_answers(draw):
    answers = good_answers()
    done = []
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(answers) if p]
        path = draw(st.sampled_from(paths))
        how = draw(st.sampled_from(["delete", "replace", "raw"]))
        replacement = draw(hostile.xmlrpc_value(1) if how != "raw" else
                           st.one_of(hostile.xml_text(), hostile.xmlrpc_value(1)))
        _apply(answers, path, how, replacement)
        done.append((path, how, replacement))
    return answers, done


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    return make_config(tmp_path_factory.mktemp("hostile-xapi"))


@settings(max_examples=hostile.examples())
@given(hostile_answers())
def test_a_pass_over_hostile_xapi_answers_decides_or_starts_afresh(config, case):
    hostile.count("hostile_xapi_pass")
    answers, done = case
    client = Client(config, answers)
    try:
        snapshot, _ = client.snapshot(OWN_UUID)
    except (NotMaster, XapiLost):
        return
    for view in snapshot.hosts:
        if view.status is None:
            assert view.error and all(isinstance(p, six.string_types) for p in view.error), view.error
        else:
            assert answer_rules.status_problem(view.status) is None
    plan = decide.decide(snapshot)
    json.dumps(plan.as_dict())
    for action in plan.actions:
        assert all(isinstance(v, six.string_types) for v in action.args.values()), action


@settings(max_examples=hostile.examples())
@given(hostile.xmlrpc_value(2), hostile.xmlrpc_value(2))
def test_a_promote_relays_only_what_a_demote_result_really_says(connections, released):
    hostile.count("hostile_demote_result")
    demoted = decide.HostView("hostB", "uuid-b", "192.0.2.12", True, status("hostB"))
    master = decide.HostView("hostA", "uuid-a", "192.0.2.11", True, status("hostA"))
    master.status["promote_accepts"] = ["force", "peer_down", "reason", "tickle",
                                        "vip_released"]
    promote = decide.Action(master, "promote", reason="r")
    promote.relay_tickle = True
    demote = decide.Action(demoted, "demote", reason="r")
    for result in ({"connections": connections, "vip_released": released}, connections):
        args = promote.args_after([(demote, result)])
        assert all(isinstance(v, six.string_types) for v in args.values()), args
        if "tickle" in args:
            assert all(isinstance(c, six.string_types) for c in json.loads(args["tickle"]))
        assert args.get("vip_released", "true") == "true"
        assert ("vip_released" in args) == (isinstance(result, dict)
                                            and result.get("vip_released") is True)


@settings(max_examples=hostile.examples())
@given(hostile_answers())
def test_the_cli_reads_hostile_xapi_answers_into_a_table_or_a_clear_error(config, case):
    hostile.count("hostile_xapi_cli")
    answers, _ = case
    client = Client(config, answers)
    try:
        pool = cli.Pool(client)
        pool.read_status()
    except (NotMaster, XapiLost):
        return
    json.dumps(cli.status_json(pool))
    cli.status_text(pool)
    cli.roles_disagree(pool)
    pool.controller, pool.manual_mode


@settings(max_examples=hostile.examples())
@given(hostile_answers())
def test_hostile_events_wake_a_pass_or_start_afresh(config, case):
    hostile.count("hostile_xapi_events")
    answers, _ = case
    client = Client(config, answers)
    try:
        token, events = client.events("", 1.0)
    except (NotMaster, XapiLost):
        return
    assert isinstance(token, str)
    daemon._watched(events, None)


# -- what the tests above found, kept as plain examples -----------------------------------

def test_a_host_named_in_utf8_is_read_and_shown(config):
    # On 2.7 the status threads' names and the table's cells were str(): a crash.
    answers = good_answers()
    answers["host.get_all_records"]["OpaqueRef:b"]["name_label"] = u"h\u00f4te-B\u00a0"
    pool = cli.Pool(Client(config, answers))
    pool.read_status()
    assert u"h\u00f4te-B" in cli.status_text(pool)


@pytest.mark.parametrize("method, path, value, problem", [
    ("pool.get_all_records", (), "; rm -rf /", "not a map of records"),
    ("pool.get_all_records", (), {}, "answered 0 pools"),
    ("pool.get_all_records", ("OpaqueRef:pool", "other_config"), None,
     "pool OpaqueRef:pool has other_config null, not a map"),
    ("pool.get_all_records", ("OpaqueRef:pool", "master"), None, "has master null, not a string"),
    ("host.get_all_records", ("OpaqueRef:b",), "x", '"x", not a reference and its record'),
    ("host.get_all_records", ("OpaqueRef:b", "name_label"), 5, "has name_label 5, not a string"),
    ("host_metrics.get_all_records", ("OpaqueRef:b-metrics",), [], "not a reference"),
    # Found by the faults profile: `iscsi-ha status --json` could not dump the name.
    ("pool.get_all_records", ("OpaqueRef:pool", "name_label"), xmlrpc_client.Binary(b""),
     "pool OpaqueRef:pool has name_label"),
    # Found by the faults profile: the pass indexed the first of no hosts.
    ("host.get_all_records", (), {}, "does not list the pool's master OpaqueRef:a"),
])
def test_a_xapi_record_without_what_the_controller_reads_starts_afresh(
        config, method, path, value, problem):
    answers = good_answers()
    if path:
        _apply(answers, (method,) + path, "replace", value)
    else:
        answers[method] = value
    with pytest.raises(XapiLost) as caught:
        Client(config, answers).snapshot(OWN_UUID)
    assert "this host's xapi answered what XAPI never does" in str(caught.value)
    assert problem in str(caught.value)


@pytest.mark.parametrize("path, value, problem", [
    (("events", 0, "snapshot"), "x", 'snapshot "x", not a record'),
    (("events", 0, "ref"), ["a"], 'has ref ["a"], not a string'),
    (("events", 0, "snapshot", "other_config"), 1, "has other_config 1, not a map"),
    (("token",), None, "token null, not a string"),
])
def test_events_the_loop_cannot_read_start_afresh(config, path, value, problem):
    answers = good_answers()
    _apply(answers, ("event.from",) + path, "replace", value)
    with pytest.raises(XapiLost) as caught:
        Client(config, answers).events("", 1.0)
    assert problem in str(caught.value)


@pytest.mark.parametrize("path, value, problem", [
    ((), ["not", "a", "status"], 'the answer is ["not", "a", "status"], not a status'),
    (("vip",), None, "the status has vip null, not a map"),
    (("vip", "answered_elsewhere"), "no", 'its vip has answered_elsewhere "no", not true or false'),
    (("resources", 0, "is_primary"), 1, "resource iscsi1 has is_primary 1, not true or false"),
    (("remembered_initiators",), [1], "remembered_initiators [1], not a list of strings"),
    (("manual_mode",), "false", 'the status has manual_mode "false", not true or false'),
])
def test_a_status_no_plugin_gives_counts_as_no_answer(config, path, value, problem):
    answers = good_answers()
    if path:
        _apply(answers, ("status hostB",) + path, "replace", value)
    else:
        answers["status hostB"] = value
    snapshot, _ = Client(config, answers).snapshot(OWN_UUID)
    other = snapshot.others[0]
    assert other.status is None
    assert other.error[0] == "ISCSI_HA_BAD_ANSWER"
    assert problem in other.error[1]
    plan = decide.decide(snapshot)
    assert plan.outcome == decide.WAITING and plan.actions == []


def test_a_status_answer_nested_too_deep_is_a_bad_answer_not_a_silent_host(config):
    # Found by the faults profile: json.loads raised RecursionError in the status thread,
    # which left the host as ISCSI_HA_NO_ANSWER, a code that counts towards "gone".
    answers = good_answers()
    answers["status hostB"] = _Raw("[" * 100000)
    snapshot, _ = Client(config, answers).snapshot(OWN_UUID)
    assert snapshot.others[0].error[0] == "ISCSI_HA_BAD_ANSWER"
    assert not snapshot.others[0].unreachable
