"""The two-host pool lab: namespaced hosts, real tgtd, the DRBD double, the XAPI simulator.

Owns building and tearing down one simulated pool on this machine, and the
events a pool lives through (planned master change, a host dying and coming
back, the replication link breaking), each driven the way the real thing is:
master changes through XAPI, as an elector or a sysadmin makes them. The lab
never moves the storage: each host runs iscsi-ha's controller
(``controllers``), and the master's moves it; the lab only waits until the
master serves. Everything the lab makes is recorded in ``STATE/lab.json`` so
that any later command, including ``down``, finds it again.

Network (addresses from the documentation ranges only)::

    hostA xenbr0 192.0.2.11 --+                      +-- client eth0 192.0.2.50
                              +-- switch (bridge) ---+
    hostB xenbr0 192.0.2.12 --+      VIP 192.0.2.100 lives on the master's xenbr0
    hostA repl0 198.51.100.1 <---- direct link ----> hostB repl0 198.51.100.2
"""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
import xmlrpc.client

import XenAPI

from iscsi_ha import commands, config as config_module
from iscsi_ha.errors import CommandFailed
from tests.drbd_double import devices as drbd_devices
from tests.drbd_double import crash as drbd_crash, cut as drbd_cut, heal as drbd_heal
from tests.drbd_double import init_pool, install_wrappers, revive as drbd_revive
from tests.drbd_double import show as drbd_show, stop_handlers as drbd_stop_handlers
from tests.drbd_double.states import CONNECTED as DRBD_CONNECTED
from tests.lab import controllers, host_etc
from tests.lab.xapi_client import MasterSession, XapiUnreachable, wait_for_slave
from tests.support import netns
from tests.support.tgtd import attach_tgtd, process_alive, start_tgtd, start_time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAB_FILE = "lab.json"
USERNAME, PASSWORD = "root", "lab-password"
IQN = "iqn.2026-01.org.example.lab:iscsi-ha"
VIP, PREFIX = "192.0.2.100", 24
CLIENT_ADDRESS = "192.0.2.50"
HOSTS = (("hostA", "192.0.2.11", "198.51.100.1"), ("hostB", "192.0.2.12", "198.51.100.2"))
STORAGE_INTERFACE, REPLICATION_INTERFACE, CLIENT_INTERFACE = "xenbr0", "repl0", "eth0"
# One replicated disk: DRBD resource iscsi1 on minor 1, 64 MiB, exported as LUN 1.
RESOURCE = {"name": "iscsi1", "minor": 1, "size_mib": 64, "lun": 1,
            "scsi_id": "1fa0c0de0001", "scsi_sn": "IHA-LAB-ISCSI1"}
SIMULATOR_START_SECONDS = 15
SR_NAME = "iscsi-ha SR"
# Who makes a survivor master when the master dies (see xapi_sim): something
# outside xapi such as HA-Lizard, the common two-host setup, or XenServer HA.
DEFAULT_ELECTOR = "external"
# Bounds on waiting for the controllers; they only stop a broken run.
SERVE_SECONDS = 90.0
BOOT_SECONDS = 30.0
SERVING_OUTCOMES = ("in-place", "done")
# ``up --baseline``: the controller as the prior tool behaves, for the bench to
# compare against: it polls every 10 s and ignores xapi's events, sends no
# tickle, promotes only once the demote answered, and checks the address with
# iputils' 1 s arping -D before a claim.
BASELINE_CONFIG = {"controller_events": "off", "controller_interval": 10,
                   "controller_tickle": "off", "controller_overlap": "off",
                   "duplicate_check": "arping"}


class LabError(Exception):
    """The lab cannot do what was asked; the message says why."""


@contextlib.contextmanager
def _controller_errors():
    try:
        yield
    except controllers.ControllerError as exc:
        raise LabError(str(exc)) from None


class Lab(object):
    """One pool, loaded from (and saved to) its state directory."""

    def __init__(self, state_dir, record):
        self.state_dir = os.path.abspath(state_dir)
        self.record = record

    # -- state ---------------------------------------------------------------

    @classmethod
    def load(cls, state_dir):
        path = os.path.join(state_dir, LAB_FILE)
        if not os.path.exists(path):
            raise LabError("no lab in %s: run `python -m tests.lab up --state %s` first"
                           % (state_dir, state_dir))
        with open(path) as handle:
            return cls(state_dir, json.load(handle))

    def save(self):
        path = os.path.join(self.state_dir, LAB_FILE)
        with open(path + ".new", "w") as handle:
            json.dump(self.record, handle, indent=2, sort_keys=True)
        os.rename(path + ".new", path)

    def path(self, *parts):
        return os.path.join(self.state_dir, *parts)

    def namespace(self, role):
        return netns.Namespace(self.record["namespaces"][role])

    @property
    def hosts(self):
        return self.record["hosts"]

    def other_host(self, name):
        self.check_host(name)
        return [other for other in self.hosts if other != name][0]

    def check_host(self, name):
        if name not in self.hosts:
            raise LabError("no host %r in this lab; hosts are %s"
                           % (name, ", ".join(sorted(self.hosts))))

    # -- XAPI ----------------------------------------------------------------

    @contextlib.contextmanager
    def xapi(self, master=None):
        """A session with the pool master, reached as a real client must (``xapi_client``).

        It starts at the host this lab last saw as master and follows
        HOST_IS_SLAVE; with ``master`` it waits until that host answers as
        master, as it does once both xapis have restarted after a master change.
        """
        first = self.hosts[master or self.record["master"]]["address"]
        try:
            session = MasterSession(self.xapi_urls(), USERNAME, PASSWORD, "iscsi-ha-lab",
                                    first, only=first if master else None)
        except XapiUnreachable as exc:
            raise LabError(str(exc)) from None
        try:
            yield session
        finally:
            session.logout()

    def xapi_urls(self):
        """Each host's xapi (its loopback listener) by the host's address."""
        urls = self.record["xapi"]["urls"]["hosts"]
        return dict((host["address"], urls[name]["loopback"]) for name, host in self.hosts.items())

    def control(self, call, *args):
        proxy = xmlrpc.client.ServerProxy(self.record["xapi"]["urls"]["control"])
        reply = getattr(proxy.lab, call)(*args)
        if reply.get("Status") != "Success":
            raise LabError("XAPI simulator refused lab.%s: %s" % (call, reply))
        return reply.get("Value")

    def call_plugin(self, session, host, fn, **args):
        """``host.call_plugin`` on ``host`` through a ``xapi()`` session, tried again while
        xapi restarts (the plugin's functions can be repeated); the decoded JSON result."""
        ref = session.retrying(lambda api: api.host.get_by_uuid(self.hosts[host]["uuid"]))
        started = time.time()
        try:
            value = session.retrying(
                lambda api: api.host.call_plugin(ref, "iscsi-ha", fn, args))
        except XenAPI.Failure as failure:
            return {"host": host, "fn": fn, "ok": False, "error": failure.details,
                    "seconds": round(time.time() - started, 3)}
        return {"host": host, "fn": fn, "ok": True, "result": json.loads(value),
                "seconds": round(time.time() - started, 3)}

    def master(self, session):
        def ask(api):
            return api.host.get_uuid(api.pool.get_master(api.pool.get_all()[0]))
        master_uuid = session.retrying(ask)
        return [name for name, host in self.hosts.items() if host["uuid"] == master_uuid][0]

    # -- tgtd ----------------------------------------------------------------

    def start_tgtd(self, name):
        """Start host ``name``'s tgtd, on the control port it had before if one is recorded
        (the host's config names it: ``[target] tgt_control_port``), else on a free one;
        recorded in ``lab.json`` at once, so that ``down`` finds it."""
        recorded = self.hosts[name].get("tgtd") or {}
        daemon = start_tgtd(self.namespace(name), control_port=recorded.get("control_port"))
        self.hosts[name]["tgtd"] = {"pid": daemon.pid, "control_port": daemon.control_port,
                                    "log": daemon.log_path, "started": start_time(daemon.pid)}
        self.save()
        return daemon

    def tgtd(self, name):
        """Host ``name``'s recorded tgtd (running or ended), or None when none is recorded or
        its pid runs another process by now: stopping that would signal a stranger."""
        info = self.hosts[name].get("tgtd")
        if not info:
            return None
        started = start_time(info["pid"])
        if started is not None and started != info.get("started"):
            return None
        return attach_tgtd(self.namespace(name), info["control_port"], info["pid"],
                           info["log"])


# -- building ------------------------------------------------------------------

def up(state_dir, drbd_version="9", plugin_python=None, elector=DEFAULT_ELECTOR,
       baseline=False):
    """Build the pool with hostA master, start every host's controller, and return the
    lab's description once hostA's controller has made it serve.

    ``elector`` is what makes a survivor master: "external" (HA-Lizard and the
    like: HA off in xapi) or "xapi-ha" (XenServer HA).  ``baseline`` writes both
    hosts' configs with BASELINE_CONFIG, the polling mode the bench compares with.
    """
    state_dir = os.path.abspath(state_dir)
    if os.path.exists(os.path.join(state_dir, LAB_FILE)):
        raise LabError("a lab is already up in %s; run `down` first" % state_dir)
    if not os.path.isdir(state_dir):
        os.makedirs(state_dir)
    prefix = netns.unique_prefix()
    lab = Lab(state_dir, {
        "prefix": prefix,
        "namespaces": {"hostA": prefix + "-a", "hostB": prefix + "-b",
                       "client": prefix + "-c", "switch": prefix + "-sw"},
        "plugin_python": plugin_python or sys.executable,
        "drbd_version": drbd_version,
        "elector": elector,
        "baseline": bool(baseline),
        "hosts": dict((name, {"uuid": str(uuid.uuid4()), "address": address,
                              "replication_address": replication, "alive": True})
                      for name, address, replication in HOSTS),
    })
    lab.save()  # from here on, `down` can clean up whatever the next steps leave
    try:
        _build_network(lab)
        _build_drbd(lab)
        for name in lab.hosts:
            lab.start_tgtd(name)
            _install_host(lab, name)
        lab.save()
        _start_simulator(lab)
        lab.save()
        since = time.time()
        with _controller_errors():
            for name in sorted(lab.hosts):
                controllers.start(lab, name)
        _wait_serving(lab, "hostA", since)
    except BaseException:
        down(state_dir)
        raise
    return describe(lab)


def describe(lab):
    record = lab.record
    return {
        "xapi_url": record["xapi"]["urls"]["pool"], "username": USERNAME,
        "password": PASSWORD, "vip": VIP, "iqn": IQN, "luns": [RESOURCE["lun"]],
        "lun_urls": ["iscsi://%s/%s/%d" % (VIP, IQN, RESOURCE["lun"])],
        "client_netns": record["namespaces"]["client"], "master": record.get("master",
                                                                             "hostA"),
        "baseline": record.get("baseline", False),
        "state": lab.state_dir,
        "hosts": dict((name, {"uuid": host["uuid"], "netns": record["namespaces"][name],
                              "address": host["address"],
                              "replication_address": host["replication_address"],
                              "xapi_url": record["xapi"]["urls"]["hosts"][name]["loopback"],
                              "alive": host["alive"]})
                      for name, host in lab.hosts.items()),
    }


def _ip(*argv):
    commands.run(["ip"] + list(argv), timeout=10)


def _build_network(lab):
    names = lab.record["namespaces"]
    for role in ("switch", "hostA", "hostB", "client"):
        netns.Namespace.create(names[role])
    switch = names["switch"]
    _ip("-n", switch, "link", "add", "br0", "type", "bridge")
    _ip("-n", switch, "link", "set", "br0", "up")
    ports = [("hostA", STORAGE_INTERFACE, lab.hosts["hostA"]["address"]),
             ("hostB", STORAGE_INTERFACE, lab.hosts["hostB"]["address"]),
             ("client", CLIENT_INTERFACE, CLIENT_ADDRESS)]
    for role, interface, address in ports:
        port = "port-" + role
        _ip("link", "add", interface, "netns", names[role], "type", "veth", "peer", "name",
            port, "netns", switch)
        _ip("-n", switch, "link", "set", port, "master", "br0", "up")
        netns.check_lab_address("%s/%d" % (address, PREFIX))
        _ip("-n", names[role], "addr", "add", "%s/%d" % (address, PREFIX), "dev", interface)
        _ip("-n", names[role], "link", "set", interface, "up")
    _ip("link", "add", REPLICATION_INTERFACE, "netns", names["hostA"], "type", "veth", "peer",
        "name", REPLICATION_INTERFACE, "netns", names["hostB"])
    for name in ("hostA", "hostB"):
        _ip("-n", names[name], "addr", "add",
            "%s/24" % lab.hosts[name]["replication_address"], "dev", REPLICATION_INTERFACE)
        _ip("-n", names[name], "link", "set", REPLICATION_INTERFACE, "up")


def _build_drbd(lab):
    names = lab.record["namespaces"]
    # Each host's resource file names its own copy of iscsi-ha's handler
    # (written by _install_fence_peer), as DRBD on a dom0 names the installed one.
    init_pool(lab.path("drbd"), lab.record["drbd_version"], sorted(lab.hosts),
              [(RESOURCE["name"], RESOURCE["minor"], RESOURCE["size_mib"])],
              dict((name, names[name]) for name in lab.hosts),
              fence_peer=dict((name, [_fence_peer_path(lab, name)]) for name in lab.hosts))
    for name in lab.hosts:
        install_wrappers(lab.path("drbd"), name, lab.path("hosts", name, "bin"))


def _fence_peer_path(lab, name):
    return lab.path("hosts", name, "libexec", "iscsi-ha-fence-peer")


def _install_fence_peer(lab, name, plugin_dir, config_path):
    """The handler beside a link to the host's library, started with the host's config.

    DRBD starts it with nearly no environment, so the config path is on its
    command line, in the small wrapper DRBD names.
    """
    libexec = os.path.dirname(_fence_peer_path(lab, name))
    if os.path.exists(libexec):
        shutil.rmtree(libexec)
    installed = os.path.join(libexec, "installed")
    os.makedirs(installed)
    os.symlink(os.path.join(plugin_dir, "iscsi_ha"), os.path.join(installed, "iscsi_ha"))
    handler = os.path.join(installed, "iscsi-ha-fence-peer")
    _install_script(lab, os.path.join("plugins", "iscsi-ha-fence-peer"), handler)
    with open(_fence_peer_path(lab, name), "w") as wrapper:
        wrapper.write("#!/bin/sh\nexec %s --config %s\n" % (handler, config_path))
    os.chmod(_fence_peer_path(lab, name), 0o755)


def _install_script(lab, source_path, path):
    """Copy ``source_path`` (in the repository) to ``path`` pointing at the plugin Python,
    as setup.py does."""
    with open(os.path.join(REPO, source_path)) as source:
        lines = source.readlines()
    lines[0] = "#!%s\n" % lab.record["plugin_python"]
    with open(path, "w") as target:
        target.writelines(lines)
    os.chmod(path, 0o755)


def _install_host(lab, name):
    """Put the plugin where xapi looks for it, with its library and config."""
    host_dir = lab.path("hosts", name)
    plugin_dir = os.path.join(host_dir, "plugins")
    if os.path.exists(plugin_dir):
        shutil.rmtree(plugin_dir)
    shutil.copytree(os.path.join(REPO, "plugins", "iscsi_ha"),
                    os.path.join(plugin_dir, "iscsi_ha"),
                    ignore=shutil.ignore_patterns("*.pyc", "__pycache__"))
    shutil.copy(os.path.join(REPO, "tests", "xapi_plugin", "XenAPIPlugin.py"), plugin_dir)
    _install_script(lab, os.path.join("plugins", "iscsi-ha"),
                    os.path.join(plugin_dir, "iscsi-ha"))
    bin_dir = os.path.join(host_dir, "bin")
    mode = BASELINE_CONFIG if lab.record.get("baseline") else {}
    text = config_module.render_sample(
        iqn=IQN, vip="%s/%d" % (VIP, PREFIX), vip_interface=STORAGE_INTERFACE,
        replication_interface=REPLICATION_INTERFACE,
        tgt_control_port=lab.hosts[name]["tgtd"]["control_port"],
        tools={"drbdadm": os.path.join(bin_dir, "drbdadm"),
               "drbdsetup": os.path.join(bin_dir, "drbdsetup"),
               "tgtadm": "tgtadm", "ip": "ip", "arping": "arping"},
        state_dir=os.path.join(host_dir, "state"), run_dir=os.path.join(host_dir, "run"),
        log_file=os.path.join(host_dir, "iscsi-ha.log"),
        metrics_file=os.path.join(host_dir, "iscsi-ha.prom"),
        xapi_url="http://%s" % lab.hosts[name]["address"], xapi_username=USERNAME,
        xapi_password_file=os.path.join(host_dir, "xapi-password"),
        lvm_conf=os.path.join(host_dir, "lvm.conf"),
        pool_conf=lab.path("hosts", name, "pool.conf"),  # written by the XAPI simulator
        kernel_log=lab.path("drbd", "kern.log"),  # the DRBD double's, for both hosts
        inventory=os.path.join(host_dir, "xensource-inventory"),
        # `iscsi-ha setup` installs this host's system files there, not in /etc.
        install_root=os.path.join(host_dir, "root"),
        replication_hosts=" ".join("%s=%s" % (host, lab.hosts[host]["replication_address"])
                                   for host in sorted(lab.hosts)),
        resources=[{"name": RESOURCE["name"], "lun": RESOURCE["lun"],
                    "device": drbd_devices.device_path(lab.path("drbd"), name,
                                                       RESOURCE["minor"]),
                    "disk": drbd_devices.disk_path(lab.path("drbd"), name, RESOURCE["name"]),
                    "scsi_id": RESOURCE["scsi_id"], "scsi_sn": RESOURCE["scsi_sn"]}],
        **mode)
    config_path = os.path.join(host_dir, "iscsi-ha.conf")
    with open(config_path, "w") as handle:
        handle.write(text)
    with open(os.path.join(host_dir, "xensource-inventory"), "w") as handle:
        handle.write("INSTALLATION_UUID='%s'\n" % lab.hosts[name]["uuid"])
    with open(os.path.join(host_dir, "lvm.conf"), "w") as handle:
        # The DRBD devices and the replicas behind them, as a dom0's filter would.
        handle.write('devices {\n    global_filter = [ "r|^%s/|", "a|.*|" ]\n}\n'
                     % lab.path("drbd"))
    with open(os.path.join(host_dir, "xapi-password"), "w") as handle:
        handle.write(PASSWORD + "\n")
    _install_fence_peer(lab, name, plugin_dir, config_path)
    lab.hosts[name]["plugin_dir"] = plugin_dir
    lab.hosts[name]["config"] = config_path
    controllers.install(lab, name, lambda source, path: _install_script(lab, source, path))
    # xapi gives the plugin no ISCSI_HA_CONF: it reads its default path.
    host_etc.install(lab.record["namespaces"][name], config_path)



def _start_simulator(lab):
    names = lab.record["namespaces"]
    simulator_config = {
        "username": USERNAME, "password": PASSWORD, "master": "hostA",
        "pool_name": "iscsi-ha-lab", "audit_log": lab.path("xapi", "audit.log"),
        "elector": lab.record.get("elector", DEFAULT_ELECTOR),
        # The SR VMs keep their disks on: LVM over iSCSI on the VIP, a PBD on each host.
        "srs": [{"name_label": SR_NAME, "type": "lvmoiscsi",
                 "device_config": {"target": VIP, "port": "3260", "targetIQN": IQN}}],
        "hosts": [{"name": name, "uuid": host["uuid"], "address": host["address"],
                   "netns": names[name], "plugin_dir": host["plugin_dir"],
                   "pool_conf": lab.path("hosts", name, "pool.conf")}
                  for name, host in sorted(lab.hosts.items())],
    }
    os.makedirs(lab.path("xapi"))
    config_path, ready = lab.path("xapi", "config.json"), lab.path("xapi", "ready.json")
    with open(config_path, "w") as handle:
        json.dump(simulator_config, handle, indent=2)
    with open(lab.path("xapi", "simulator.log"), "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.lab.xapi_sim", "--config", config_path,
             "--ready", ready], cwd=REPO, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
            env=dict(os.environ, PYTHONPATH=os.pathsep.join([REPO,
                                                              os.path.join(REPO, "plugins")])))
    lab.record["xapi"] = {"pid": process.pid, "started": start_time(process.pid)}
    lab.save()
    deadline = time.time() + SIMULATOR_START_SECONDS
    while not os.path.exists(ready):
        if process.poll() is not None or time.time() > deadline:
            with open(lab.path("xapi", "simulator.log")) as log:
                raise LabError("the XAPI simulator did not start: %s" % log.read()[-2000:])
        time.sleep(0.05)
    with open(ready) as handle:
        urls = json.load(handle)
    urls.pop("pid")
    lab.record["xapi"]["urls"] = urls
    lab.record["master"] = "hostA"


# -- events --------------------------------------------------------------------

def status(state_dir):
    """The master, each host's plugin status (or what XAPI said instead) and each host's
    controller: running or not, and what its state file says.

    A dead host's status is what xapi makes of it: CANNOT_CONTACT_HOST after its
    retries while the host still counts as live, HOST_OFFLINE once it does not.
    """
    lab = Lab.load(state_dir)
    with lab.xapi() as session:
        master = lab.master(session)
        hosts = dict((name, lab.call_plugin(session, name, "status"))
                     for name in sorted(lab.hosts))
    return {"master": master, "hosts": hosts,
            "controllers": dict((name, controllers.describe(lab, name))
                                for name in sorted(lab.hosts))}


def _roles(lab, master):
    """Each live host's plugin role, asked through ``master``'s xapi."""
    with lab.xapi(master=master) as session:
        answers = dict((name, lab.call_plugin(session, name, "status"))
                       for name in sorted(lab.hosts) if lab.hosts[name]["alive"])
    return dict((name, answer["result"]["role"] if answer["ok"] else " ".join(answer["error"]))
                for name, answer in answers.items())


def _wait_serving(lab, master, since):
    """Wait until ``master``'s controller has made it serve: its status says primary and
    every other live host's says secondary. Returns the controller's pass that did it.

    Cheap while waiting: the plugins are asked only after the master's controller
    reports a pass, started after ``since``, that left the storage in place or
    moved it.
    """
    deadline = time.monotonic() + SERVE_SECONDS
    checked, roles = None, None
    expected = dict((name, "primary" if name == master else "secondary")
                    for name in lab.hosts if lab.hosts[name]["alive"])
    while True:
        if not controllers.running(lab, master):
            raise LabError("the controller of %s is not running (%s), so nothing makes it "
                           "serve (start it: `python -m tests.lab controller start %s`)\n%s"
                           % (master, controllers.ending(lab, master), master,
                              controllers.tail(lab, master)))
        served = controllers.first_pass(lab, master, since, SERVING_OUTCOMES)
        last = (controllers.passes(lab, master) or [{}])[-1]
        if served is not None and last.get("finished") != checked:
            checked = last.get("finished")
            roles = _roles(lab, master)
            if roles == expected:
                return served
        if time.monotonic() > deadline:
            raise LabError("%s did not serve within %.0f s (roles seen: %s; its controller's "
                           "last pass: %s: %s)\n%s" % (
                               master, SERVE_SECONDS, roles or "not asked",
                               last.get("outcome"), last.get("reason"),
                               "\n".join(controllers.tail(lab, name)
                                         for name in sorted(lab.hosts))))
        time.sleep(0.05)


def _served(lab, master, since):
    """What a command that waited for ``master`` to serve reports about it."""
    last = _wait_serving(lab, master, since)
    return {"serving_seconds": round(last["finished"] - since, 3),
            "controller": dict((key, last.get(key)) for key in (
                "reason", "outcome", "trigger", "actions"))}


def designate_master(state_dir, name, wait=True):
    """A planned master change, as ``xe pool-designate-new-master``; nothing else.

    xapi refuses it while HA is on: with XenServer HA as elector, HA is disabled
    first and enabled again on the new master, as a sysadmin must.  The call
    returns once committed; both xapis restart after the fuse.  With ``wait``,
    it then waits until the new master's controller has made it serve.
    """
    lab = Lab.load(state_dir)
    lab.check_host(name)
    with lab.xapi() as session:
        old = lab.master(session)
        if old == name:
            raise LabError("%s is the master already" % name)
        started = time.time()
        pool_ref = session.xenapi.pool.get_all()[0]
        ha = session.xenapi.pool.get_ha_enabled(pool_ref)
        try:
            if ha:
                session.xenapi.pool.disable_ha()
            session.xenapi.pool.designate_new_master(
                session.xenapi.host.get_by_uuid(lab.hosts[name]["uuid"]))
        except XenAPI.Failure as failure:
            if ha:
                session.xenapi.pool.enable_ha([], {})
            raise LabError("XAPI refused the master change to %s: %s"
                           % (name, " ".join(failure.details))) from None
    committed = time.time()
    lab.record["master"] = name
    lab.save()
    result = {"master": name, "previous_master": old}
    if ha or wait:
        with lab.xapi(master=name) as session:
            result["xapi_restart_seconds"] = round(time.time() - committed, 3)
            if ha:
                try:
                    session.retrying(lambda api: api.pool.enable_ha([], {}))
                except XenAPI.Failure as failure:
                    raise LabError("XAPI refused to enable HA again on %s: %s"
                                   % (name, " ".join(failure.details))) from None
    if wait:
        result.update(_served(lab, name, committed))
    result["seconds"] = round(time.time() - started, 3)
    return result


def fail_host(state_dir, name, wait=True, elector_waits_for_drbd=False):
    """``name`` dies (its controller with it); when it was master, the survivor becomes
    master as the elector makes it.

    A real elector (HA-Lizard, XenServer HA) declares a master dead only after
    many seconds, long after DRBD's ping timeout told the survivor its peer is
    gone; the lab's elector acts at once.  ``elector_waits_for_drbd`` makes it
    wait, before it acts, until the survivor's DRBD reports the peer lost, so
    that this detection (the DRBD double's ping window) does not land inside a
    measured takeover; the wait is reported as ``elector_wait_seconds``.

    An external elector (HA-Lizard and the like), having fenced the dead master,
    calls pool.emergency_transition_to_master on the survivor; XenServer HA makes
    the survivor master by itself.  Either way its xapi restarts as master.
    With ``wait`` (and a new master), it then waits until the survivor's
    controller has made it serve.
    """
    lab = Lab.load(state_dir)
    lab.check_host(name)
    if not lab.hosts[name]["alive"]:
        raise LabError("%s is down already" % name)
    survivor = lab.other_host(name)
    started = time.time()
    # All at once, as a host that loses power: the controller first, so that it
    # sees nothing of its host's death.
    with _controller_errors():
        controllers.kill(lab, name)
    namespace = lab.namespace(name)
    for interface in (STORAGE_INTERFACE, REPLICATION_INTERFACE):
        namespace.run(["ip", "link", "set", interface, "down"])
    daemon = lab.tgtd(name)
    if daemon is not None:
        daemon.process.send_signal(signal.SIGKILL)  # nothing when it has ended already
        daemon.stop(timeout=2)  # reaps what SIGKILL left and removes its socket files
    drbd_crash(lab.path("drbd"), name)
    lab.control("fail_host", name)
    failed = time.time()
    lab.hosts[name]["alive"] = False
    lab.hosts[name]["tgtd"] = None
    was_master = lab.record.get("master") == name
    result = {"failed": name, "survivor": survivor, "failed_at": failed}
    if was_master and elector_waits_for_drbd:
        _wait_peer_lost(lab, survivor)
        result["elector_wait_seconds"] = round(time.time() - failed, 3)
    if was_master:
        result["elector_acted_at"] = time.time()
        if lab.record.get("elector", DEFAULT_ELECTOR) == "external":
            _emergency_transition(lab, survivor)
        lab.record["master"] = survivor
    lab.save()
    if was_master and wait:
        with lab.xapi(master=survivor):
            result["xapi_restart_seconds"] = round(time.time() - failed, 3)
        result.update(_served(lab, survivor, failed))
    result["master"] = lab.record["master"]
    result["seconds"] = round(time.time() - started, 3)
    return result


def _wait_peer_lost(lab, survivor):
    """Until the DRBD of ``survivor`` no longer sees its peer on any resource."""
    deadline = time.monotonic() + BOOT_SECONDS
    while True:
        resources = drbd_show(lab.path("drbd"))["resources"]
        if all(resource["replicas"][survivor]["connection"] != DRBD_CONNECTED
               for resource in resources.values()):
            return
        if time.monotonic() > deadline:
            raise LabError("the DRBD of %s still sees its dead peer after %.0f s"
                           % (survivor, BOOT_SECONDS))
        time.sleep(0.02)


def _emergency_transition(lab, survivor):
    """What an external elector does on the surviving slave once the master is fenced."""
    session = XenAPI.Session(lab.record["xapi"]["urls"]["hosts"][survivor]["loopback"])
    session.slave_local_login_with_password(USERNAME, PASSWORD)
    try:
        session.xenapi.pool.emergency_transition_to_master()
    finally:
        try:
            session.logout()
        except OSError:
            pass  # the fuse blew first: that xapi has forgotten the session anyway


def restore_host(state_dir, name):
    """``name`` boots again: an empty run directory, no VIP, a fresh tgtd, DRBD Secondary,
    back in the pool as slave, then its controller starts; returns once that controller
    says its host is a slave."""
    lab = Lab.load(state_dir)
    lab.check_host(name)
    if lab.hosts[name]["alive"]:
        raise LabError("%s is up already" % name)
    # Before anything of the new boot runs: a dom0 keeps [host] run_dir on tmpfs.
    controllers.empty_run_dir(lab, name)
    namespace = lab.namespace(name)
    # A rebooted dom0 comes up without the floating IP.
    namespace.run(["ip", "addr", "flush", "dev", STORAGE_INTERFACE])
    namespace.run(["ip", "addr", "add", "%s/%d" % (lab.hosts[name]["address"], PREFIX),
                   "dev", STORAGE_INTERFACE])
    for interface in (STORAGE_INTERFACE, REPLICATION_INTERFACE):
        namespace.run(["ip", "link", "set", interface, "up"])
    lab.start_tgtd(name)
    _install_host(lab, name)  # the control port is new
    drbd_revive(lab.path("drbd"), name)
    lab.control("restore_host", name)
    lab.hosts[name]["alive"] = True
    lab.save()
    # Its xapi starts (as master if it died as one, then yields) and joins the pool.
    master_address = lab.hosts[lab.record["master"]]["address"]
    try:
        wait_for_slave(lab.record["xapi"]["urls"]["hosts"][name]["loopback"], master_address,
                       USERNAME, PASSWORD)
    except XapiUnreachable as exc:
        raise LabError(str(exc)) from None
    with _controller_errors():
        pid = controllers.start(lab, name)
    _wait_mode(lab, name, pid, "slave")
    return {"restored": name, "master": lab.record["master"]}


def _wait_mode(lab, name, pid, mode):
    """Until the controller running as ``pid`` on ``name`` says its host is in ``mode``."""
    deadline = time.monotonic() + BOOT_SECONDS
    while True:
        record = controllers.state(lab, name) or {}
        if record.get("pid") == pid and record.get("mode") == mode:
            return
        if not controllers.running(lab, name) or time.monotonic() > deadline:
            raise LabError("the controller of %s did not report mode %s within %.0f s (it "
                           "says %s)\n%s" % (name, mode, BOOT_SECONDS, record.get("mode"),
                                             controllers.tail(lab, name)))
        time.sleep(0.05)


def controller(state_dir, action, name):
    """``controller stop|start|kill HOST``: the controller process only, as systemctl or a
    crash would; returns whether it ran before and runs now, and its pid."""
    lab = Lab.load(state_dir)
    lab.check_host(name)
    before = controllers.running(lab, name)
    if action == "start" and not lab.hosts[name]["alive"]:
        raise LabError("%s is down: `restore-host %s` boots it, controller included"
                       % (name, name))
    with _controller_errors():
        if action == "start":
            controllers.start(lab, name)
        elif action == "stop":
            controllers.stop(lab, name)
        else:
            controllers.kill(lab, name)
    return {"host": name, "action": action, "was_running": before,
            "running": controllers.running(lab, name),
            "pid": (lab.hosts[name].get("controller") or {}).get("pid")}


def hold_plugin(state_dir, name, fns):
    """``hold-plugin HOST FN...``: plugin calls of ``fns`` on HOST get stuck before their
    plugin starts (an overloaded xapi, a flapping management link) until
    ``release-plugin``; their callers see no answer."""
    lab = Lab.load(state_dir)
    lab.check_host(name)
    lab.control("hold_plugin", name, list(fns))
    return {"host": name, "held": sorted(fns)}


def release_plugin(state_dir, name, reached=True):
    """``release-plugin HOST [--unreached]``: the held calls run their plugin now, or
    (``reached`` false) end with CANNOT_CONTACT_HOST without running it."""
    lab = Lab.load(state_dir)
    lab.check_host(name)
    calls = lab.control("release_plugin", name, reached)
    return {"host": name, "released_calls": calls, "reached": reached}


def cut_replication(state_dir):
    return _set_replication(state_dir, connected=False)


def heal_replication(state_dir):
    return _set_replication(state_dir, connected=True)


def _set_replication(state_dir, connected):
    lab = Lab.load(state_dir)
    for name in lab.hosts:
        if lab.hosts[name]["alive"]:
            lab.namespace(name).run(["ip", "link", "set", REPLICATION_INTERFACE,
                                     "up" if connected else "down"])
    (drbd_heal if connected else drbd_cut)(lab.path("drbd"))
    return {"replication": "healed" if connected else "cut"}


def down(state_dir):
    """Remove every namespace, process and file of the lab; fine to run twice."""
    state_dir = os.path.abspath(state_dir)
    path = os.path.join(state_dir, LAB_FILE)
    if not os.path.exists(path):
        if os.path.isdir(state_dir) and not os.listdir(state_dir):
            os.rmdir(state_dir)
        return {"down": True, "was_up": False}
    lab = Lab.load(state_dir)
    problems = []
    for name in lab.hosts:  # before their xapi goes away under them
        try:
            controllers.stop(lab, name, seconds=10.0)
        except controllers.ControllerError as exc:
            problems.append(str(exc))
    simulator = lab.record.get("xapi", {}).get("pid")
    if simulator:
        _reap(simulator)  # one that ended as our child would keep its pid, as a zombie
        # Its pid may run another process by now.
        if start_time(simulator) == lab.record["xapi"].get("started"):
            _terminate(simulator, problems)
    if os.path.isdir(lab.path("drbd")):
        try:
            drbd_stop_handlers(lab.path("drbd"))  # fence-peer handlers still running
        except Exception as exc:  # keep tearing down; report at the end
            problems.append("DRBD handlers: %s" % exc)
    for name in lab.hosts:
        try:
            daemon = lab.tgtd(name)
            if daemon is not None:
                daemon.stop()
        except Exception as exc:  # keep tearing down; report at the end
            problems.append("tgtd of %s: %s" % (name, exc))
    for role in ("client", "hostA", "hostB", "switch"):
        try:
            lab.namespace(role).delete()
        except CommandFailed as exc:
            problems.append("namespace %s: %s" % (role, exc.message))
    for name in lab.hosts:
        try:
            host_etc.remove(lab.record["namespaces"][name])
        except OSError as exc:
            problems.append("/etc/netns of %s: %s" % (name, exc))
    shutil.rmtree(state_dir, ignore_errors=True)
    if problems:
        raise LabError("down finished with problems: %s" % "; ".join(problems))
    return {"down": True, "was_up": True}


def _terminate(pid, problems, seconds=5):
    try:
        os.kill(pid, signal.SIGTERM)
    except OSError:
        return
    deadline = time.time() + seconds
    while time.time() < deadline:
        _reap(pid)
        if not process_alive(pid):
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
    _reap(pid)
    problems.append("the XAPI simulator (pid %d) ignored SIGTERM and was killed" % pid)


def _reap(pid):
    """Collect ``pid`` when this process started it (a test calling ``up`` and ``down``)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
