"""The XAPI simulator's pool: its machines and each host's xapi, run by run (Python 3 only).

Owns: :class:`Pool`, the hosts of the simulated pool, each alive or dead and
with its xapi, which starts, runs and exits as xapi does: it reads its role
from ``pool.conf`` when it starts (as master, from its copy of the database,
checking first that no other host runs as master; as slave, in emergency mode
until its master answers) and keeps that role until it exits; an exit ends
every session and connection of that run, and a master's database then lives
on as the host's own copy.  Also what the pool's timers drive: the fuse that
restarts xapi after a master change, the master's database copies to its
slaves, its liveness checks without HA (heartbeats that stop when a host
dies), HA's fencing and election with it; the listeners each run answers on
(and the "pool" listener, which follows the running master); the lock every
part of the simulator holds, and waits that release it.

What a call may do is decided in ``xapi_sim``, which calls the methods here.
"""

import os
import threading
import time
import uuid

from .xapi_db import NULL_REF, Database, Messages, xapi_now
from .xapi_listeners import Listener

XAPI_PORT = 80


class ConnectionDropped(Exception):
    """The xapi behind a listener exited (or its host died) during the call."""


def write_atomically(path, text):
    """Replace ``path`` so that a reader sees the old or the new text, never a mix."""
    temporary = "%s.tmp-%d" % (path, os.getpid())
    with open(temporary, "w") as handle:
        handle.write(text)
    os.replace(temporary, path)


class Session(object):
    def __init__(self, local_host, originator, now):
        # Name of the host a slave_local login is valid on; None for a pool session.
        self.local_host = local_host
        self.originator = originator
        self.last_active = now


class XapiRun(object):
    """One run of a host's xapi, from its start until it exits."""

    def __init__(self, role, master_address, now):
        self.role = role  # "master" or "slave", read from pool.conf at start
        self.master_address = master_address  # a slave's master, as pool.conf named it
        # A slave is in emergency mode until its master has answered.
        self.booting = role == "slave"
        self.started = now
        self.sessions = {}
        self.fuse_lit = False
        # The designated new master restarts once its connection to the old one drops.
        self.restart_with_master = False
        # A master's: its database and messages, and when it last heard from each host.
        self.db = None
        self.messages = None
        self.heard = {}

    @property
    def is_master(self):
        return self.role == "master"


class Host(object):
    """One machine of the pool: alive or not, its xapi (None while it is not running)."""

    def __init__(self, spec, disk_role):
        self.name = spec["name"]
        self.uuid = spec["uuid"]
        self.address = spec["address"]
        self.netns = spec["netns"]
        self.plugin_dir = spec["plugin_dir"]
        self.pool_conf = spec["pool_conf"]
        self.ref = None
        self.metrics_ref = None
        self.alive = True
        self.boots = 0  # counts the machine's lives, so that a timer of an earlier one is void
        self.died_at = None
        self.disk_role = disk_role  # pool.conf: "master" or "slave:<address>"
        self.xapi = None
        # What this host starts from should it become master: its own database when
        # it was master, else the last copy the master sent it.
        self.backup = None
        self.message_backup = None
        self.ha_armed = False
        self.fenced = False  # HA declared it dead
        self.listeners = []
        self.plugin_runs = set()


class Pool(object):
    """The hosts and their xapi runs; every use holds ``lock`` (a Condition)."""

    def __init__(self, config, answerer):
        self.config = config
        self.timers = config["timers"]
        self.lock = threading.Condition(threading.RLock())
        self.hosts = {}
        self._started = False
        self._timers = set()
        self.initial_db = self._build_database()
        self._pool_listener = Listener(answerer, "pool", "pool", "127.0.0.1")
        for host in self.hosts.values():
            host.listeners.append(Listener(answerer, host.name + "/loopback", "host",
                                           "127.0.0.1", host_name=host.name))
            if host.netns:
                host.listeners.append(Listener(answerer, host.name + "/netns", "host",
                                               host.address, XAPI_PORT, host.name, host.netns))

    def _build_database(self):
        db = Database()
        master = self.config["master"]
        master_address = next(spec["address"] for spec in self.config["hosts"]
                              if spec["name"] == master)
        for spec in self.config["hosts"]:
            role = "master" if spec["name"] == master else "slave:" + master_address
            host = Host(spec, role)
            host.metrics_ref = db.add("host_metrics", {
                "uuid": str(uuid.uuid4()), "live": True,
                "last_updated": xapi_now(), "other_config": {}})
            host.ref = db.add("host", {
                "uuid": host.uuid, "name_label": host.name, "name_description": "",
                "hostname": host.name, "address": host.address, "enabled": True,
                "metrics": host.metrics_ref, "other_config": {},
                "API_version_major": "2", "API_version_minor": "21"})
            self.hosts[host.name] = host
        # HA's heartbeat needs an SR outside the pair (the one iscsi-ha serves cannot be it).
        srs = [{"name_label": "ha-statefile", "type": "nfs",
                "name_description": "shared storage outside the pair, for HA",
                "device_config": {"server": "198.51.100.200", "serverpath": "/ha"}}]
        for spec in srs + [dict(sr, name_description="") for sr in self.config["srs"]]:
            sr_ref = db.add("SR", {"uuid": str(uuid.uuid4()), "name_label": spec["name_label"],
                                   "name_description": spec["name_description"],
                                   "type": spec["type"], "shared": True, "PBDs": [],
                                   "other_config": {}})
            # A shared SR has a PBD on every host; the lab starts with them attached.
            pbds = [db.add("PBD", {"uuid": str(uuid.uuid4()), "host": host.ref, "SR": sr_ref,
                                   "device_config": dict(spec["device_config"]),
                                   "currently_attached": True, "other_config": {}})
                    for host in self.hosts.values()]
            db.update(sr_ref, {"PBDs": pbds})
        ha = self.config["elector"] == "xapi-ha"
        self.pool_ref = db.add("pool", {
            "uuid": str(uuid.uuid4()), "name_label": self.config["pool_name"],
            "name_description": "", "master": self.hosts[master].ref,
            "default_SR": NULL_REF, "other_config": {}, "ha_enabled": ha,
            "ha_statefiles": [], "current_operations": {}})
        for host in self.hosts.values():
            host.backup = db.copy()
            host.message_backup = Messages()
            host.ha_armed = ha
        return db

    # -- lifecycle -------------------------------------------------------------

    def start(self):
        """Every host's xapi starts at once (the lab begins with a settled pool)."""
        with self.lock:
            self._started = True
            # The master first, so that the slaves find it as they start.
            for host in sorted(self.hosts.values(), key=lambda h: h.disk_role != "master"):
                self._write_pool_conf(host)
                self._start_xapi(host, host.boots)
            self._every(self.timers["gc_interval"], self._collect_garbage)

    def stop(self):
        with self.lock:
            self._started = False
            for timer in list(self._timers):
                timer.cancel()
            self._timers.clear()
            self._pool_listener.close()
            for host in self.hosts.values():
                for listener in host.listeners:
                    listener.close()
                host.xapi = None
                self.kill_plugins(host)
            self.lock.notify_all()

    def urls(self):
        return {
            "pool": self._pool_listener.url,
            "hosts": {
                host.name: {
                    "loopback": host.listeners[0].url,
                    "netns": host.listeners[1].url if host.netns else None,
                }
                for host in self.hosts.values()
            },
        }

    def running_masters(self):
        return sorted(host.name for host in self.hosts.values()
                      if host.xapi and host.xapi.is_master)

    def behind(self, listener):
        """The host a host or pool listener answers as (None: a control listener)."""
        if listener.kind in ("host", "pool") and listener.host_name:
            return self.hosts[listener.host_name]
        return None

    # -- timers and waits --------------------------------------------------------

    def _after(self, seconds, function, *args):
        """Run ``function(*args)`` under the lock in ``seconds``, unless the pool stops."""
        def fire():
            with self.lock:
                self._timers.discard(timer)
                if self._started:
                    function(*args)
        timer = threading.Timer(seconds, fire)
        timer.daemon = True
        self._timers.add(timer)
        timer.start()

    def _every(self, seconds, function):
        """Run ``function()`` every ``seconds`` for as long as it returns True."""
        def tick():
            if function():
                self._after(seconds, tick)
        self._after(seconds, tick)

    def sleep(self, call, seconds):
        """Wait ``seconds`` with the lock released; the call ends if its xapi exits."""
        deadline = time.monotonic() + seconds
        while True:
            self.assert_serving(call)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self.lock.wait(remaining)

    def assert_serving(self, call):
        """A call whose xapi run has ended loses its connection."""
        if call.host.xapi is not call.xapi:
            raise ConnectionDropped()

    # -- roles -------------------------------------------------------------------

    def _write_pool_conf(self, host):
        if host.pool_conf:
            # xapi writes the role without a trailing newline.
            write_atomically(host.pool_conf, host.disk_role)

    def set_disk_role(self, host, role):
        """Write ``host``'s pool.conf: its xapi takes the role when it next starts."""
        host.disk_role = role
        self._write_pool_conf(host)

    def _host_at(self, address):
        return next((host for host in self.hosts.values() if host.address == address), None)

    def master_at(self, address):
        """The running master xapi at ``address``, or None: what a slave can reach."""
        host = self._host_at(address)
        if host is None or not host.alive or host.xapi is None or not host.xapi.is_master:
            return None
        return host.xapi

    def connected_slave(self, host, master):
        """Whether ``host`` runs as a slave in touch with ``master``'s xapi."""
        xapi = host.xapi
        return (host.alive and xapi is not None and not xapi.is_master and not xapi.booting
                and xapi.master_address == master.address)

    def ha_enabled(self, db):
        return db.record("pool", self.pool_ref)["ha_enabled"]

    # -- each host's xapi --------------------------------------------------------

    def _start_xapi(self, host, boots):
        if not host.alive or host.boots != boots or host.xapi is not None:
            return
        now = time.monotonic()
        if host.disk_role == "master":
            # xapi's check for other masters: whoever starts later yields.
            for other in self.hosts.values():
                if other is not host and self.master_at(other.address):
                    self.set_disk_role(host, "slave:" + other.address)
                    self._after(self.timers["xapi_start"], self._start_xapi, host, boots)
                    return
            xapi = XapiRun("master", None, now)
            xapi.db = host.backup.copy()
            xapi.messages = host.message_backup.copy()
            host.xapi = xapi
            self._become_master(host)
        else:
            xapi = XapiRun("slave", host.disk_role[len("slave:"):], now)
            host.xapi = xapi
            self._join_master(host, xapi)
        if self._started:
            for listener in host.listeners:
                listener.open()
        self._sync_pool_listener()
        self.lock.notify_all()

    def _become_master(self, host):
        xapi = host.xapi
        db = xapi.db
        db.update(self.pool_ref, {"master": host.ref, "current_operations": {}})
        ha = self.ha_enabled(db)
        for other in self.hosts.values():
            xapi.heard[other.name] = xapi.started
            if other is host:
                live = True
            elif ha:
                live = not other.fenced
            else:
                # A new master's clocks start afresh: every host looks alive for a while.
                live = True
            if db.record("host_metrics", other.metrics_ref)["live"] != live:
                db.update(other.metrics_ref, {"live": live})
        self._every(self.timers["db_backup_interval"],
                    lambda: self._back_up_database(host, xapi))

    def _join_master(self, host, xapi):
        """A starting slave's hello to its master, retried until the master answers."""
        if host.xapi is not xapi or not xapi.booting:
            return
        master = self.master_at(xapi.master_address)
        if master is None:
            self._after(self.timers["slave_retry"], self._join_master, host, xapi)
            return
        xapi.booting = False
        host.ha_armed = self.ha_enabled(master.db)
        master.heard[host.name] = time.monotonic()
        if not master.db.record("host_metrics", host.metrics_ref)["live"]:
            master.db.update(host.metrics_ref, {"live": True})
        self.lock.notify_all()

    def _stop_xapi(self, host):
        """xapi exits: its sessions and connections are gone; a master flushes its database."""
        xapi = host.xapi
        if xapi is None:
            return
        host.xapi = None
        if xapi.is_master:
            host.backup = xapi.db.copy()
            host.message_backup = xapi.messages.copy()
        for listener in host.listeners:
            listener.close()
        self._sync_pool_listener()
        for other in self.hosts.values():
            if (other.xapi and other.xapi.restart_with_master
                    and other.xapi.master_address == host.address):
                self._restart_xapi(other)
        self.lock.notify_all()

    def _restart_xapi(self, host):
        self._stop_xapi(host)
        self._after(self.timers["xapi_start"], self._start_xapi, host, host.boots)

    def light_fuse(self, host):
        """``host``'s xapi restarts once the fuse has burnt."""
        xapi = host.xapi
        if xapi.fuse_lit:
            return  # xapi lights its fuse once
        xapi.fuse_lit = True

        def blow():
            if host.xapi is xapi:
                self._restart_xapi(host)
        self._after(self.timers["fuse"], blow)

    def _back_up_database(self, host, xapi):
        if host.xapi is not xapi:
            return False
        self.sync_backups(host, messages=False)
        return True

    def sync_backups(self, host, messages):
        """The master's database (and messages) copied to every slave in touch with it."""
        xapi = host.xapi
        for other in self.hosts.values():
            if other is not host and self.connected_slave(other, host):
                other.backup = xapi.db.copy()
                if messages:
                    other.message_backup = xapi.messages.copy()

    def _sync_pool_listener(self):
        masters = [host for host in self.hosts.values()
                   if host.alive and host.xapi and host.xapi.is_master]
        target = masters[0].name if len(masters) == 1 else None
        listener = self._pool_listener
        if listener.is_open and listener.host_name == target:
            return
        listener.close()
        listener.host_name = target
        if target is not None and self._started:
            listener.open()

    def _collect_garbage(self):
        """The master's periodic pass: host liveness without HA, idle sessions."""
        now = time.monotonic()
        for host in self.hosts.values():
            xapi = host.xapi
            if xapi is None:
                continue
            expired = [ref for ref, session in xapi.sessions.items()
                       if now - session.last_active > self.timers["session_idle"]]
            for ref in expired:
                del xapi.sessions[ref]
            if expired:
                self.lock.notify_all()
            if not xapi.is_master or self.ha_enabled(xapi.db):
                continue
            for other in self.hosts.values():
                if other is host:
                    continue
                if self.connected_slave(other, host):
                    xapi.heard[other.name] = now
                live = xapi.db.record("host_metrics", other.metrics_ref)["live"]
                quiet = now - xapi.heard[other.name] > self.timers["host_assumed_dead"]
                if live == quiet:
                    xapi.db.update(other.metrics_ref, {"live": not quiet})
                    self.lock.notify_all()
        return True

    def _ha_fence(self, dead, boots):
        """HA has fenced ``dead``: not live for its master; a slave of it becomes master."""
        if dead.alive or dead.boots != boots:
            return
        dead.fenced = True
        for host in self.hosts.values():
            xapi = host.xapi
            if not host.alive or xapi is None or not host.ha_armed:
                continue
            if xapi.is_master:
                xapi.db.update(dead.metrics_ref, {"live": False})
            elif xapi.master_address == dead.address:
                # HA's statefile holds the database's redo log: nothing is lost.
                host.backup = dead.backup.copy()
                self.set_disk_role(host, "master")
                self.light_fuse(host)
        self.lock.notify_all()

    # -- the machines --------------------------------------------------------------

    def fail_host(self, host):
        """The host dies: its listeners refuse connections, its plugins are killed."""
        if not host.alive:
            return
        self._stop_xapi(host)
        host.alive = False
        host.boots += 1
        host.died_at = time.monotonic()
        self.kill_plugins(host)
        if host.ha_armed:
            self._after(self.timers["ha_fence"], self._ha_fence, host, host.boots)
        self._sync_pool_listener()
        self.lock.notify_all()

    def restore_host(self, host):
        """The host boots again; its xapi starts with the role its pool.conf names."""
        if host.alive:
            return
        host.alive = True
        host.boots += 1
        host.fenced = False
        self._after(self.timers["xapi_start"], self._start_xapi, host, host.boots)
        self.lock.notify_all()

    def restart_xapi(self, host):
        """A live host's xapi exits and starts again, as after a crash or a toolstack
        restart; a host that is down stays down."""
        if host.alive and host.xapi is not None:
            self._restart_xapi(host)

    def kill_plugins(self, host):
        for run in list(host.plugin_runs):
            run.kill()
