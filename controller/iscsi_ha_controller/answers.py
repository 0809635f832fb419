"""What the controller and the CLI take from XAPI and from a plugin's ``status``: the
fields they read, each of the type they read it as.

An answer that lacks one, or has one of another type, is no view of the pool: a
xapi that answers so is treated as broken (observe's ``BadAnswer``: start
afresh), and a host whose plugin answers so as one that gave no status
(``ISCSI_HA_BAD_ANSWER``), so that nothing is decided from it. Each function
returns None for a good answer, or the problem in words.
"""

import json

import six

_TEXT = six.string_types
# The plugin's status (README, "status - this host's view"): field -> type, for what
# decide and the CLI read. Optional fields are those an older plugin lacks.
_STATUS = (("role", _TEXT), ("config_digest", _TEXT), ("resources", list),
           ("target", dict), ("vip", dict))
_STATUS_OPTIONAL = (("pool_role", _TEXT + (type(None),)), ("manual_mode", bool))
_STATUS_TEXT_LISTS = ("connections", "remembered_initiators", "promote_accepts")
_RESOURCE = (("name", _TEXT), ("role", _TEXT), ("connection", _TEXT), ("disk", _TEXT),
             ("peer_disk", _TEXT), ("is_primary", bool), ("configured", bool),
             ("connected", bool), ("disk_up_to_date", bool))
_TARGET = (("daemon_running", bool),)
_VIP = (("address", _TEXT), ("local", bool), ("answered_elsewhere", bool))
_CHECK = (("ok", bool), ("checks", list))
_CHECK_ITEM = (("check", _TEXT), ("ok", bool), ("detail", _TEXT))
# XAPI records: what observe and the CLI read of each.
_POOL = (("uuid", _TEXT), ("name_label", _TEXT), ("master", _TEXT), ("other_config", dict))
_HOST = (("uuid", _TEXT), ("name_label", _TEXT), ("address", _TEXT), ("metrics", _TEXT))
_EVENT = (("class", _TEXT), ("operation", _TEXT), ("ref", _TEXT))


def _short(value):
    """``value`` as JSON (the same on every Python), cut to a readable length."""
    text = json.dumps(value, sort_keys=True, default=repr)
    return text if len(text) <= 80 else text[:77] + "..."


def _wanted(kinds):
    if kinds is bool:
        return "true or false"
    if kinds in (list, dict):
        return "a list" if kinds is list else "a map"
    return "a string" if type(None) not in kinds else "a string or null"


def _fields(record, fields, where):
    for name, kinds in fields:
        if name not in record:
            return "%s has no %s" % (where, name)
        # bool is an int, and an int no bool: compare the type itself for bool.
        value = record[name]
        if not isinstance(value, kinds) or (kinds is bool) != isinstance(value, bool):
            return "%s has %s %s, not %s" % (where, name, _short(value), _wanted(kinds))
    return None


def _text_list(value):
    return isinstance(value, list) and all(isinstance(item, _TEXT) for item in value)


def _text_map(value):
    return isinstance(value, dict) and all(isinstance(k, _TEXT) and isinstance(v, _TEXT)
                                           for k, v in value.items())


def status_problem(status):
    """What is wrong with a plugin ``status`` answer, or None."""
    if not isinstance(status, dict):
        return "the answer is %s, not a status" % _short(status)
    problem = _fields(status, _STATUS, "the status")
    if problem:
        return problem
    optional = [(name, kinds) for name, kinds in _STATUS_OPTIONAL if name in status]
    problem = (_fields(status, optional, "the status")
               or _fields(status["target"], _TARGET, "its target")
               or _fields(status["vip"], _VIP, "its vip"))
    if problem:
        return problem
    for name in _STATUS_TEXT_LISTS:
        if name in status and not _text_list(status[name]):
            return "the status has %s %s, not a list of strings" % (name, _short(status[name]))
    for resource in status["resources"]:
        if not isinstance(resource, dict):
            return "the status lists resource %s, not a record" % _short(resource)
        problem = _fields(resource, _RESOURCE, "resource %s" % resource.get("name"))
        if problem:
            return problem
    return None


def check_problem(result):
    """What is wrong with a plugin ``check`` answer, or None."""
    if not isinstance(result, dict):
        return "the answer is %s, not a check report" % _short(result)
    problem = _fields(result, _CHECK, "the report")
    for item in result.get("checks") if problem is None else ():
        if not isinstance(item, dict):
            return "the report lists %s, not a check" % _short(item)
        problem = problem or _fields(item, _CHECK_ITEM, "a check")
    return problem


def records_problem(answer, method):
    """What is wrong with the answer to a ``get_all_records`` ``method``, or None."""
    if not isinstance(answer, dict):
        return "%s answered %s, not a map of records" % (method, _short(answer))
    for ref, record in answer.items():
        if not isinstance(ref, _TEXT) or not isinstance(record, dict):
            return "%s answered %s: %s, not a reference and its record" % (
                method, _short(ref), _short(record))
    return None


def pool_problem(record, ref):
    problem = _fields(record, _POOL, "pool %s" % ref)
    if problem is None and not _text_map(record["other_config"]):
        problem = "pool %s has other_config %s, not a map of strings" % (
            ref, _short(record["other_config"]))
    return problem


def host_problem(record, ref):
    return _fields(record, _HOST, "host %s" % ref)


def events_problem(result):
    """What is wrong with an ``event.from`` answer, or None."""
    if not isinstance(result, dict):
        return "event.from answered %s, not a batch of events" % _short(result)
    if not isinstance(result.get("token"), _TEXT):
        return "event.from answered token %s, not a string" % _short(result.get("token"))
    if not isinstance(result.get("events"), list):
        return "event.from answered events %s, not a list" % _short(result.get("events"))
    for event in result["events"]:
        if not isinstance(event, dict):
            return "event.from listed %s, not an event" % _short(event)
        problem = _fields(event, _EVENT, "an event")
        snapshot = event.get("snapshot", {})
        if problem is None and not isinstance(snapshot, dict):
            problem = "the event of %s has snapshot %s, not a record" % (
                event["ref"], _short(snapshot))
        if problem is None and not isinstance(snapshot.get("other_config", {}), dict):
            problem = "the event of %s has other_config %s, not a map" % (
                event["ref"], _short(snapshot["other_config"]))
        if problem:
            return problem
    return None
