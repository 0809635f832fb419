"""The XAPI simulator's config: what it holds, its defaults, xapi's timers (Python 3 only).

Owns: the keys a simulator config may have and their validation (a
``ValueError`` naming what is wrong), and :data:`TIMERS`, xapi's timers with
the value xapi uses and the lab's default, which keeps the lab fast.  Tests
that show the real-length behaviour set short values of their own.

Config (JSON): ``username``, ``password``, ``master`` (a host name) and ``hosts``,
each ``{name, uuid, address, plugin_dir}`` plus optional ``netns`` (null: no
listener in a namespace, plugins run where the simulator runs) and ``pool_conf``
(path to keep as the host's pool.conf); optional ``pool_name``, ``audit_log``
(JSON lines), ``ip_tool``, ``max_sessions_per_originator`` (xapi: 500),
``timers`` (any of :data:`TIMERS`), ``srs`` (shared SRs beyond HA's heartbeat SR,
each ``{name_label, type, device_config}``: a PBD on every host, attached) and
``elector``:

* ``"external"`` (default): xapi's HA is off; something outside xapi, such as
  HA-Lizard, fences a dead master and calls ``pool.emergency_transition_to_master``
  on the survivor.
* ``"xapi-ha"``: XenServer HA is on; it fences a dead host, marks it not live
  and makes the survivor master by itself.

There is no setting for what xapi does not offer: a plugin's environment, its
interpreter or a timeout.
"""

import json
import math

# name -> (xapi's value, the lab's default, what it is)
TIMERS = {
    "fuse": (10.0, 0.5, "seconds from a committed master change (or an emergency "
                        "transition) until xapi exits to restart (Constants.fuse_time)"),
    "xapi_start": (30.0, 0.2, "seconds a restarting xapi takes until it answers again "
                              "(xapi: tens of seconds)"),
    "host_assumed_dead": (600.0, 600.0, "seconds without word from a host before the "
                                        "master marks it not live, HA off "
                                        "(host_assumed_dead_interval)"),
    "gc_interval": (30.0, 1.0, "seconds between the master's liveness and session "
                               "checks (db_GC_TIMER)"),
    "call_plugin_retry": (10.0, 0.1, "seconds between the 10 attempts to reach an "
                                     "unreachable live host (xmlrpc_client)"),
    "in_flight_hang": (43200.0, 60.0, "seconds a call hangs when its host dies under it "
                                      "(xapi: until the connection times out)"),
    "session_idle": (86400.0, 86400.0, "seconds unused before a session expires "
                                       "(inactive_session_timeout)"),
    "db_backup_interval": (300.0, 300.0, "seconds between the master's database syncs "
                                         "to the slaves (pool_db_sync_interval)"),
    "slave_retry": (5.0, 0.2, "seconds between a starting slave's attempts to reach its "
                              "master"),
    "ha_fence": (60.0, 0.5, "seconds from a host's death until HA has fenced it "
                            "(ha_default_timeout_base)"),
    "designate_call": (2.0, 0.05, "seconds pool.designate_new_master takes (database "
                                  "sync and two-phase commit)"),
}
# Timers that repeat: zero would make them spin.
PERIODIC_TIMERS = ("gc_interval", "db_backup_interval", "slave_retry")
ELECTORS = ("external", "xapi-ha")
MAX_SESSIONS_PER_ORIGINATOR = 500

CONFIG_KEYS = {"username", "password", "pool_name", "audit_log", "master", "hosts",
               "ip_tool", "elector", "timers", "max_sessions_per_originator", "srs"}
SR_KEYS = {"name_label", "type", "device_config"}
HOST_KEYS = {"name", "uuid", "address", "netns", "plugin_dir", "pool_conf"}


def load_config(path):
    with open(path) as handle:
        return json.load(handle)


def validate_config(config):
    """The config with defaults filled in; ValueError names what is wrong."""
    unknown = set(config) - CONFIG_KEYS
    if unknown:
        raise ValueError("unknown config keys: %s" % ", ".join(sorted(unknown)))
    for key in ("username", "password", "master", "hosts"):
        if key not in config:
            raise ValueError("config lacks %r" % key)
    result = dict(config)
    result.setdefault("pool_name", "iscsi-ha-lab")
    result.setdefault("audit_log", None)
    result.setdefault("ip_tool", "ip")
    result.setdefault("elector", "external")
    result.setdefault("max_sessions_per_originator", MAX_SESSIONS_PER_ORIGINATOR)
    if result["elector"] not in ELECTORS:
        raise ValueError("elector must be one of %s, not %r"
                         % (", ".join(ELECTORS), result["elector"]))
    limit = result["max_sessions_per_originator"]
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError("max_sessions_per_originator must be a whole number >= 1, not %r"
                         % (limit,))
    result["timers"] = _timers(config.get("timers") or {})
    result["srs"] = [_sr(spec) for spec in config.get("srs") or []]
    result["hosts"] = [_host(spec) for spec in config["hosts"]]
    names = [host["name"] for host in result["hosts"]]
    if not names or len(set(names)) != len(names):
        raise ValueError("hosts need distinct names: %s" % names)
    if config["master"] not in names:
        raise ValueError("master %r is not one of the hosts %s" % (config["master"], names))
    return result


def _timers(given):
    timers = dict(given)
    unknown = set(timers) - set(TIMERS)
    if unknown:
        raise ValueError("unknown timers: %s (known: %s)"
                         % (", ".join(sorted(unknown)), ", ".join(sorted(TIMERS))))
    for name, (_, default, _) in TIMERS.items():
        value = timers.setdefault(name, default)
        least = 0.001 if name in PERIODIC_TIMERS else 0
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or not math.isfinite(value) or value < least):
            raise ValueError("timer %s must be a number of seconds >= %s, not %r"
                             % (name, least, value))
    return timers


def _sr(spec):
    if not isinstance(spec, dict) or set(spec) != SR_KEYS:
        raise ValueError("an SR needs exactly the keys %s, not %r" % (sorted(SR_KEYS), spec))
    config = spec["device_config"]
    if not isinstance(config, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                               for k, v in config.items()):
        raise ValueError("SR %s: device_config must map strings to strings"
                         % spec["name_label"])
    return dict(spec)


def _host(spec):
    unknown = set(spec) - HOST_KEYS
    if unknown:
        raise ValueError("unknown keys in host %s: %s"
                         % (spec.get("name"), ", ".join(sorted(unknown))))
    for key in ("name", "uuid", "address", "plugin_dir"):
        if not spec.get(key):
            raise ValueError("host %s lacks %r" % (spec.get("name"), key))
    host = dict(spec)
    host.setdefault("netns", None)
    host.setdefault("pool_conf", None)
    return host
