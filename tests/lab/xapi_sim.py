"""A stand-in for xapi on a two-host XenServer/XCP-ng pool, for the lab (Python 3 only).

Owns: the simulated pool as a whole (:class:`XapiSimulator`): its config and its
validation; the API methods, who may call them where (sessions, master and
slaves) and what each does, including ``host.call_plugin``, run the way xapi
runs host plugins; the lab controls (a host dies, comes back, the audit trail);
the audit log and each host's ``pool.conf``; and the command line.  The
database and ``event.from``'s generations live in ``xapi_db``; the listeners,
network namespaces and the XML-RPC encoding in ``xapi_listeners``.

    python3 -m tests.lab.xapi_sim --config lab/xapi.json [--ready lab/ready.json]

runs in the foreground, writes the listener URLs (:attr:`XapiSimulator.urls` plus
``pid``) to ``ready.json`` once every listener accepts connections, and exits
cleanly on SIGTERM.  Tests use :class:`XapiSimulator` directly.

Config (JSON): ``username``, ``password``, ``master`` (a host name) and ``hosts``,
each ``{name, uuid, address, plugin_dir}`` plus optional ``netns`` (null: no
listener in a namespace, plugins run where the simulator runs),
``plugin_interpreter`` (argv prefix, default []), ``plugin_env`` (extra environment)
and ``pool_conf`` (path to keep as the host's pool.conf); optional ``pool_name``,
``audit_log`` (JSON lines), ``plugin_timeout`` (seconds, default 60) and ``ip_tool``.

Lab calls take no session and are answered on loopback listeners only:
``lab.fail_host(name)``, ``lab.restore_host(name)``, ``lab.audit()``.  Send them to
the "control" URL: a dying host cuts every connection it has, including the one
that asked for its death.

The wire behaviour follows xapi (xapi-project/xen-api): replies are
``{"Status": "Success", "Value": ...}`` or ``{"Status": "Failure",
"ErrorDescription": [code, ...]}``; 64-bit ints travel as decimal strings; void
calls return ``""``.  Simplifications a reader of lab results should know:

* A slave answers only ``slave_local`` logins and emergency calls (with a session
  from such a login); everything else gets ``HOST_IS_SLAVE``.  Real slaves also
  serve some calls with a session from the master.
* A dead host's ``host_metrics.live`` turns false at once; real xapi waits for
  heartbeats to time out.
* There is one master at a time: ``pool.emergency_transition_to_master`` on a
  slave while the old master still lives demotes the old master instead of
  leaving two hosts that each think they are master.
"""

import argparse
import copy
import datetime
import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
import uuid
import xmlrpc.client

from .xapi_db import (NULL_REF, TABLES, Database, Subscriptions, XapiFailure, make_token,
                      new_ref, parse_token, xapi_now)
from .xapi_listeners import MALFORMED_XMLRPC, Listener, in_netns

# What callers import from here; in_netns and XapiFailure live in the modules above.
__all__ = ["XapiSimulator", "XapiFailure", "load_config", "validate_config", "plugin_result",
           "in_netns", "main"]

# What PAM's failure reads as in xapi's SESSION_AUTHENTICATION_FAILED.
AUTHENTICATION_FAILURE = "Authentication failure"
REDACTED = "********"
XAPI_PORT = 80
DEFAULT_PLUGIN_TIMEOUT = 60.0

# Calls a slave answers (with a session from slave_local_login_with_password).
EMERGENCY_METHODS = frozenset(["pool.emergency_transition_to_master", "session.local_logout"])
# The XenAPI module (26.x) sends session.xenapi.event_from(...) under this name.
METHOD_ALIASES = {"event_from": "event.from"}
# message.create's cls values that name a class this lab has objects of.
MESSAGE_CLASS_TABLES = {"Host": "host", "Pool": "pool"}

CONFIG_KEYS = {"username", "password", "pool_name", "audit_log", "master", "hosts",
               "plugin_timeout", "ip_tool"}
HOST_KEYS = {"name", "uuid", "address", "netns", "plugin_dir", "plugin_interpreter",
             "plugin_env", "pool_conf"}


class ConnectionDropped(Exception):
    """The host behind a listener died (or restarted as a slave) during the call."""


def write_atomically(path, text):
    """Replace ``path`` so that a reader sees the old or the new text, never a mix."""
    temporary = "%s.tmp-%d" % (path, os.getpid())
    with open(temporary, "w") as handle:
        handle.write(text)
    os.replace(temporary, path)


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
    result.setdefault("plugin_timeout", DEFAULT_PLUGIN_TIMEOUT)
    result.setdefault("ip_tool", "ip")
    hosts = []
    for spec in config["hosts"]:
        unknown = set(spec) - HOST_KEYS
        if unknown:
            raise ValueError("unknown keys in host %s: %s"
                             % (spec.get("name"), ", ".join(sorted(unknown))))
        for key in ("name", "uuid", "address", "plugin_dir"):
            if not spec.get(key):
                raise ValueError("host %s lacks %r" % (spec.get("name"), key))
        host = dict(spec)
        host.setdefault("netns", None)
        host.setdefault("plugin_interpreter", [])
        host.setdefault("plugin_env", {})
        host.setdefault("pool_conf", None)
        hosts.append(host)
    names = [host["name"] for host in hosts]
    if not names or len(set(names)) != len(names):
        raise ValueError("hosts need distinct names: %s" % names)
    if config["master"] not in names:
        raise ValueError("master %r is not one of the hosts %s" % (config["master"], names))
    result["hosts"] = hosts
    return result


class _Host(object):
    """One host of the pool as configured, with its database refs and liveness."""

    def __init__(self, spec):
        self.name = spec["name"]
        self.uuid = spec["uuid"]
        self.address = spec["address"]
        self.netns = spec["netns"]
        self.plugin_dir = spec["plugin_dir"]
        self.plugin_interpreter = list(spec["plugin_interpreter"])
        self.plugin_env = dict(spec["plugin_env"])
        self.pool_conf = spec["pool_conf"]
        self.ref = None
        self.metrics_ref = None
        self.alive = True
        self.listeners = []
        self.plugin_processes = set()


class _Session(object):
    def __init__(self, local_host):
        # Name of the host a slave_local login is valid on; None for a pool session.
        self.local_host = local_host


class _Method(object):
    """How a method is called: its handler and how many arguments follow the session."""

    def __init__(self, handler, min_args, max_args=None, needs_session=True, locked=True):
        self.handler = handler
        self.min_args = min_args
        self.max_args = min_args if max_args is None else max_args
        self.needs_session = needs_session
        # False for handlers that must not hold the state lock throughout (plugins).
        self.locked = locked


class _Call(object):
    """One incoming call: where it arrived and on whose behalf."""

    def __init__(self, listener, host):
        self.listener = listener
        self.host = host
        self.session_ref = None


class XapiSimulator(object):
    """The simulated pool: ``start()``, talk to ``urls``, ``stop()``.

    ``urls`` is ``{"pool": url, "control": url, "hosts": {name: {"loopback": url,
    "netns": url or None}}}``; "pool" answers as the current master, "control"
    only takes lab calls and stays up whatever happens to the hosts.
    """

    def __init__(self, config):
        self.config = validate_config(config)
        self._lock = threading.Condition(threading.RLock())
        self._db = Database()
        self._sessions = {}
        self._audit = []
        self._hosts = {}
        self._master = self.config["master"]
        self._started = False
        self._build_database()
        self._control = Listener(self, "control", "control", "127.0.0.1")
        self._pool_listener = Listener(self, "pool", "pool", "127.0.0.1")
        for host in self._hosts.values():
            host.listeners.append(Listener(self, host.name + "/loopback", "host",
                                           "127.0.0.1", host_name=host.name))
            if host.netns:
                host.listeners.append(Listener(self, host.name + "/netns", "host",
                                               host.address, XAPI_PORT, host.name, host.netns))
        self._methods = self._method_table()
        self._lab_methods = {
            "lab.fail_host": _Method(self._lab_fail_host, 1, needs_session=False),
            "lab.restore_host": _Method(self._lab_restore_host, 1, needs_session=False),
            "lab.audit": _Method(self._lab_audit, 0, needs_session=False),
        }

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info):
        self.stop()

    # -- lifecycle -------------------------------------------------------------

    def start(self):
        with self._lock:
            self._started = True
            try:
                for listener in self._all_listeners():
                    listener.open()
                for host in self._hosts.values():
                    self._write_pool_conf(host)
            except Exception:
                self.stop()
                raise

    def stop(self):
        with self._lock:
            self._started = False
            for listener in self._all_listeners():
                listener.close()
            for host in self._hosts.values():
                self._kill_plugins(host)
            self._lock.notify_all()

    @property
    def urls(self):
        with self._lock:
            return {
                "pool": self._pool_listener.url,
                "control": self._control.url,
                "hosts": {
                    host.name: {
                        "loopback": host.listeners[0].url,
                        "netns": host.listeners[1].url if host.netns else None,
                    }
                    for host in self._hosts.values()
                },
            }

    @property
    def master(self):
        with self._lock:
            return self._master

    def _all_listeners(self):
        listeners = [self._control, self._pool_listener]
        for host in self._hosts.values():
            listeners.extend(host.listeners)
        return listeners

    def _build_database(self):
        pool_uuid = str(uuid.uuid4())
        for spec in self.config["hosts"]:
            host = _Host(spec)
            host.metrics_ref = self._db.add("host_metrics", {
                "uuid": str(uuid.uuid4()), "live": True,
                "last_updated": xapi_now(), "other_config": {}})
            host.ref = self._db.add("host", {
                "uuid": host.uuid, "name_label": host.name, "name_description": "",
                "hostname": host.name, "address": host.address, "enabled": True,
                "metrics": host.metrics_ref, "other_config": {},
                "API_version_major": "2", "API_version_minor": "21"})
            self._hosts[host.name] = host
        self._pool_ref = self._db.add("pool", {
            "uuid": pool_uuid, "name_label": self.config["pool_name"],
            "name_description": "", "master": self._hosts[self._master].ref,
            "default_SR": NULL_REF, "other_config": {}, "ha_enabled": False})

    # -- lab controls (also reachable as lab.* calls) --------------------------

    def fail_host(self, name):
        """The host dies: its listeners refuse connections, its plugins are killed."""
        with self._lock:
            host = self._lab_host(name)
            if not host.alive:
                return
            host.alive = False
            self._db.update(host.metrics_ref, {"live": False})
            for listener in host.listeners:
                listener.close()
            if name == self._master:
                self._pool_listener.close()
            self._kill_plugins(host)
            self._lock.notify_all()

    def restore_host(self, name):
        """The host is back: a slave of the current master (or master, if nobody took over)."""
        with self._lock:
            host = self._lab_host(name)
            if host.alive:
                return
            host.alive = True
            self._db.update(host.metrics_ref, {"live": True, "last_updated": xapi_now()})
            self._write_pool_conf(host)
            if self._started:
                for listener in host.listeners:
                    listener.open()
                if name == self._master:
                    self._pool_listener.open()
            self._lock.notify_all()

    def audit_entries(self):
        with self._lock:
            return copy.deepcopy(self._audit)

    def _lab_host(self, name):
        if name not in self._hosts:
            raise XapiFailure("LAB_UNKNOWN_HOST", name)
        return self._hosts[name]

    def _lab_fail_host(self, call, name):
        self.fail_host(name)
        return ""

    def _lab_restore_host(self, call, name):
        self.restore_host(name)
        return ""

    def _lab_audit(self, call):
        return self.audit_entries()

    # -- pool topology ---------------------------------------------------------

    def _master_address(self):
        return self._hosts[self._master].address

    def _write_pool_conf(self, host):
        if not host.pool_conf:
            return
        # xapi writes the role without a trailing newline.
        role = "master" if host.name == self._master else "slave:" + self._master_address()
        write_atomically(host.pool_conf, role)

    def _make_master(self, name):
        self._master = name
        self._db.update(self._pool_ref, {"master": self._hosts[name].ref})
        for host in self._hosts.values():
            # A dead host keeps the pool.conf it had when it died.
            if host.alive:
                self._write_pool_conf(host)
        if self._started:
            self._pool_listener.open()
        self._lock.notify_all()

    # -- calls: who may call what, and the audit trail -------------------------

    def answer(self, listener, method, params):
        """The reply struct to one call arriving at ``listener``, or None to drop the connection.

        Every call, whatever its outcome, goes to the audit trail.
        """
        started = time.monotonic()
        with self._lock:
            behind = self._host_behind(listener)
        try:
            reply = {"Status": "Success", "Value": self._dispatch(listener, method or "", params)}
            outcome = "Success"
        except XapiFailure as failure:
            reply = {"Status": "Failure", "ErrorDescription": failure.description}
            outcome = failure.description[0]
        except ConnectionDropped:
            reply, outcome = None, "CONNECTION_DROPPED"
        except Exception as exc:  # a simulator bug must still reach the client as an error
            traceback.print_exc()
            reply = {"Status": "Failure", "ErrorDescription": ["INTERNAL_ERROR", str(exc)]}
            outcome = "INTERNAL_ERROR"
        self._record(listener, behind.name if behind else None, method, params, outcome,
                     time.monotonic() - started)
        return reply

    def _host_behind(self, listener):
        if listener.kind == "host":
            return self._hosts[listener.host_name]
        if listener.kind == "pool":
            return self._hosts[self._master]
        return None

    def _dispatch(self, listener, method, params):
        name = METHOD_ALIASES.get(method, method)
        if name.startswith("lab."):
            spec = self._lab_methods.get(name) if listener.loopback else None
        elif listener.kind == "control":
            spec = None
        else:
            spec = self._methods.get(name)
        if spec is None:
            raise XapiFailure("MESSAGE_METHOD_UNKNOWN", method)
        args = list(params)
        leading = 1 if spec.needs_session else 0
        if not spec.min_args + leading <= len(args) <= spec.max_args + leading:
            raise XapiFailure("MESSAGE_PARAMETER_COUNT_MISMATCH", method,
                              spec.max_args + leading, len(args))
        with self._lock:
            call = _Call(listener, self._host_behind(listener))
            if spec.needs_session:
                call.session_ref = args.pop(0)
                self._check_session(call, name)
            if spec.locked:
                return spec.handler(call, *args)
        return spec.handler(call, *args)

    def _check_session(self, call, method):
        """Raise the error xapi gives when this call's session may not be used here."""
        ref = call.session_ref
        session = self._sessions.get(ref) if isinstance(ref, str) else None
        is_slave = call.host.name != self._master
        if is_slave and method not in EMERGENCY_METHODS:
            raise XapiFailure("HOST_IS_SLAVE", self._master_address())
        # A slave knows only its own local sessions; a master also knows the pool's.
        usable = (call.host.name,) if is_slave else (None, call.host.name)
        if session is None or session.local_host not in usable:
            raise XapiFailure("SESSION_INVALID", ref or "")

    def _record(self, listener, host_name, method, params, outcome, seconds):
        shown = list(params)
        if method in ("session.login_with_password",
                      "session.slave_local_login_with_password") and len(shown) > 1:
            shown[1] = REDACTED
        entry = {
            "time": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "listener": listener.name, "host": host_name, "method": method,
            "params": shown, "outcome": outcome, "seconds": round(seconds, 6),
        }
        # Round-trip through JSON so that entries hold plain values (DateTime -> str).
        line = json.dumps(entry, default=str, sort_keys=True)
        with self._lock:
            self._audit.append(json.loads(line))
            if self.config["audit_log"]:
                with open(self.config["audit_log"], "a") as log:
                    log.write(line + "\n")

    # -- the API ---------------------------------------------------------------

    def _method_table(self):
        methods = {
            "session.login_with_password": _Method(self._login_with_password, 2, 4,
                                                   needs_session=False),
            "session.slave_local_login_with_password": _Method(self._slave_local_login, 2,
                                                               needs_session=False),
            "session.logout": _Method(self._logout, 0),
            "session.local_logout": _Method(self._logout, 0),
            "pool.add_to_other_config": _Method(self._pool_add_to_other_config, 3),
            "pool.remove_from_other_config": _Method(self._pool_remove_from_other_config, 2),
            "pool.designate_new_master": _Method(self._pool_designate_new_master, 1),
            "pool.emergency_transition_to_master": _Method(self._pool_emergency_transition, 0),
            "host.call_plugin": _Method(self._host_call_plugin, 4, locked=False),
            "message.create": _Method(self._message_create, 5),
            "event.from": _Method(self._event_from, 3),
        }
        for cls in TABLES + ("message",):
            methods[cls + ".get_all"] = _Method(self._getter_all(cls), 0)
            methods[cls + ".get_all_records"] = _Method(self._getter_all_records(cls), 0)
            methods[cls + ".get_record"] = _Method(self._getter_record(cls), 1)
            methods[cls + ".get_by_uuid"] = _Method(self._getter_by_uuid(cls), 1)
        for cls in TABLES:
            for field in self._db.rows(cls)[0].record:
                methods["%s.get_%s" % (cls, field)] = _Method(self._getter_field(cls, field), 1)
        return methods

    def _getter_all(self, cls):
        return lambda call: [row.ref for row in self._db.rows(cls)]

    def _getter_all_records(self, cls):
        return lambda call: {row.ref: copy.deepcopy(row.record) for row in self._db.rows(cls)}

    def _getter_record(self, cls):
        return lambda call, ref: self._db.record(cls, ref)

    def _getter_by_uuid(self, cls):
        return lambda call, object_uuid: self._db.ref_by_uuid(cls, object_uuid)

    def _getter_field(self, cls, field):
        return lambda call, ref: self._db.record(cls, ref)[field]

    def _authenticate(self, username, password):
        if (username, password) != (self.config["username"], self.config["password"]):
            raise XapiFailure("SESSION_AUTHENTICATION_FAILED", username, AUTHENTICATION_FAILURE)

    def _new_session(self, local_host):
        ref = new_ref()
        self._sessions[ref] = _Session(local_host)
        return ref

    def _login_with_password(self, call, username, password, version="1.1", originator=""):
        # xapi checks the role before the password.
        if call.host.name != self._master:
            raise XapiFailure("HOST_IS_SLAVE", self._master_address())
        self._authenticate(username, password)
        return self._new_session(None)

    def _slave_local_login(self, call, username, password):
        self._authenticate(username, password)
        return self._new_session(call.host.name)

    def _logout(self, call):
        del self._sessions[call.session_ref]
        # Blocked event.from calls of this session now fail with SESSION_INVALID.
        self._lock.notify_all()
        return ""

    def _pool_add_to_other_config(self, call, ref, key, value):
        row = self._db.row("pool", ref)
        if key in row.record["other_config"]:
            raise XapiFailure("MAP_DUPLICATE_KEY", "pool", "other_config",
                              row.record["uuid"], key)
        other_config = dict(row.record["other_config"], **{key: value})
        self._db.update(ref, {"other_config": other_config})
        self._lock.notify_all()
        return ""

    def _pool_remove_from_other_config(self, call, ref, key):
        row = self._db.row("pool", ref)
        if key in row.record["other_config"]:
            other_config = dict(row.record["other_config"])
            del other_config[key]
            self._db.update(ref, {"other_config": other_config})
            self._lock.notify_all()
        return ""

    def _host_by_ref(self, ref):
        self._db.row("host", ref)
        return next(host for host in self._hosts.values() if host.ref == ref)

    def _pool_designate_new_master(self, call, host_ref):
        target = self._host_by_ref(host_ref)
        if not target.alive:
            raise XapiFailure("HOST_OFFLINE", host_ref)
        if target.name != self._master:
            self._make_master(target.name)
        return ""

    def _pool_emergency_transition(self, call):
        if call.host.name != self._master:
            self._make_master(call.host.name)
        return ""

    def _message_create(self, call, name, priority, cls, obj_uuid, body):
        table = MESSAGE_CLASS_TABLES.get(cls)
        if table is None:
            raise XapiFailure("UUID_INVALID", cls, obj_uuid)
        try:
            self._db.ref_by_uuid(table, obj_uuid)
        except XapiFailure:
            raise XapiFailure("UUID_INVALID", cls, obj_uuid) from None
        try:
            priority = str(int(priority))
        except (TypeError, ValueError):
            raise XapiFailure("FIELD_TYPE_ERROR", "priority") from None
        ref = self._db.add("message", {
            "uuid": str(uuid.uuid4()), "name": name, "priority": priority, "cls": cls,
            "obj_uuid": obj_uuid, "timestamp": xapi_now(), "body": body})
        self._lock.notify_all()
        return ref

    def _event_from(self, call, classes, token, timeout):
        subscriptions = Subscriptions(classes)
        since = parse_token(token)
        deadline = time.monotonic() + float(timeout)
        while True:
            self._assert_still_serving(call)
            events = self._db.changes_since(since, subscriptions)
            remaining = deadline - time.monotonic()
            if events or remaining <= 0:
                break
            self._lock.wait(remaining)
        return {"events": events, "valid_ref_counts": self._db.counts(),
                "token": make_token(self._db.generation)}

    def _assert_still_serving(self, call):
        """A blocked call ends the way it would on real xapi when the world changes under it."""
        if call.session_ref not in self._sessions:
            raise XapiFailure("SESSION_INVALID", call.session_ref)
        if not call.listener.is_open or not call.host.alive:
            raise ConnectionDropped()
        # A demoted master restarts xapi as a slave, cutting its connections.
        if call.listener.kind == "host" and call.host.name != self._master:
            raise ConnectionDropped()

    # -- host plugins ----------------------------------------------------------

    def _host_call_plugin(self, call, host_ref, plugin, fn, args):
        with self._lock:
            target = self._host_by_ref(host_ref)
            if not target.alive:
                raise XapiFailure("HOST_OFFLINE", host_ref)
        # xapi runs only plugins listed in its plugin directory (no paths, no "..").
        try:
            available = os.listdir(target.plugin_dir)
        except OSError:
            available = []
        if plugin not in available:
            raise XapiFailure("XENAPI_MISSING_PLUGIN", plugin)
        if not isinstance(args, dict) or not all(
                isinstance(key, str) and isinstance(value, str) for key, value in args.items()):
            raise XapiFailure("FIELD_TYPE_ERROR", "args")
        request = xmlrpc.client.dumps((call.session_ref, args), fn)
        argv = target.plugin_interpreter + [os.path.join(target.plugin_dir, plugin), request]
        if target.netns:
            argv = [self.config["ip_tool"], "netns", "exec", target.netns] + argv
        environment = dict(os.environ)
        environment.update(target.plugin_env)
        try:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, env=environment,
                                       start_new_session=True)
        except OSError as exc:
            raise XapiFailure("XENAPI_PLUGIN_FAILURE", "non-zero exit", "", str(exc)) from None
        with self._lock:
            target.plugin_processes.add(process)
            if not target.alive:
                self._kill_plugins(target)
        try:
            stdout, stderr = process.communicate(timeout=self.config["plugin_timeout"])
        except subprocess.TimeoutExpired:
            _kill_process_group(process)
            stdout, stderr = process.communicate()
        finally:
            with self._lock:
                target.plugin_processes.discard(process)
                host_died = not target.alive
        if host_died:
            raise XapiFailure("HOST_OFFLINE", host_ref)
        return plugin_result(process.returncode, stdout.decode("utf-8", "replace"),
                             stderr.decode("utf-8", "replace"))

    def _kill_plugins(self, host):
        for process in list(host.plugin_processes):
            _kill_process_group(process)


def _kill_process_group(process):
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def plugin_result(returncode, stdout, stderr):
    """What xapi makes of a finished plugin: its Value, or the XapiFailure to raise."""
    if returncode < 0:
        raise XapiFailure("XENAPI_PLUGIN_FAILURE",
                          "signal: %s" % signal.Signals(-returncode).name, stdout, stderr)
    if returncode > 0:
        raise XapiFailure("XENAPI_PLUGIN_FAILURE", "non-zero exit", stdout, stderr)
    try:
        params, method = xmlrpc.client.loads(stdout)
    except xmlrpc.client.Fault as fault:
        raise XapiFailure("XENAPI_PLUGIN_FAILURE", "fault", fault.faultCode,
                          fault.faultString) from None
    except MALFORMED_XMLRPC as exc:
        raise XapiFailure("XENAPI_PLUGIN_FAILURE", "failed to parse plugin output", stdout,
                          exc) from None
    response = params[0] if method is None and len(params) == 1 else None
    if isinstance(response, dict):
        if response.get("Status") == "Success" and isinstance(response.get("Value"), str):
            return response["Value"]
        description = response.get("ErrorDescription")
        if (response.get("Status") == "Failure" and isinstance(description, list)
                and description and all(isinstance(item, str) for item in description)):
            raise XapiFailure(*description)
    raise XapiFailure("XENAPI_PLUGIN_FAILURE", "unexpected XMLRPC result", stdout)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python3 -m tests.lab.xapi_sim",
        description="Simulated xapi for the iscsi-ha lab; runs until SIGTERM.")
    parser.add_argument("--config", required=True, help="the lab's simulator config (JSON)")
    parser.add_argument("--ready", help="where to write the listener URLs once listening "
                                        "(default: ready.json next to the config)")
    options = parser.parse_args(argv)
    ready_path = options.ready or os.path.join(
        os.path.dirname(os.path.abspath(options.config)), "ready.json")
    try:
        simulator = XapiSimulator(load_config(options.config))
    except (OSError, ValueError) as exc:
        sys.stderr.write("xapi_sim: %s\n" % exc)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    # A ready file left by an earlier run must not announce this one early.
    if os.path.exists(ready_path):
        os.remove(ready_path)
    try:
        simulator.start()
    except OSError as exc:
        sys.stderr.write("xapi_sim: cannot listen: %s\n" % exc)
        return 2
    try:
        write_atomically(ready_path, json.dumps(dict(simulator.urls, pid=os.getpid()),
                                                indent=2, sort_keys=True))
        while not stop.wait(0.5):
            pass
    finally:
        simulator.stop()
        if os.path.exists(ready_path):
            os.remove(ready_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
