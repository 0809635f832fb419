"""The admin API of the DRBD double: a pool's STATE directory as tests and the lab see it.

Owns creating a pool (``init_pool``), the exclusive lock every command takes on
STATE, the audit trail ``STATE/commands.log``, the events tests inflict from
outside DRBD's control (cutting and healing the replication link, crashing and
reviving a host, letting time pass with ``elapse``), waiting for or stopping the
fence-peer handlers that run in the background, and reading the model
(``show``, ``data_path``).
"""

import contextlib
import fcntl
import json
import os
import time

from . import fencing, resfile
from .errors import DoubleError
from .model import KERNEL_LOG, KERNELS, STATE_FILE, Pool, timestamp
from .states import DATA_DIR, DUNKNOWN, SECONDARY, UP_TO_DATE
from .options import pool_options, seconds

# Lab defaults: notice a dead peer as DRBD does (PING_WINDOW: see init_pool); resync
# the 64 MiB lab disk in 0.5 s.
PING_WINDOW = None
RESYNC_RATE = 128.0
HANDLER_TIMEOUT = 120.0

LOCK_FILE = ".lock"
COMMANDS_LOG = "commands.log"


@contextlib.contextmanager
def exclusive(state_dir):
    """STATE is ours until the block ends: both hosts' commands take turns on one pool."""
    with open(os.path.join(state_dir, LOCK_FILE), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield lock


@contextlib.contextmanager
def locked_pool(state_dir):
    """The pool, exclusively ours until the block ends (or while it runs ``unlocked``),
    brought up to now first; saved only if the block succeeds."""
    if not os.path.isfile(os.path.join(state_dir, STATE_FILE)):
        raise DoubleError("%s is not a DRBD double state directory (run init first)" % state_dir)
    with exclusive(state_dir) as lock:
        pool = Pool.load(state_dir, lock=lock, spawner=fencing.spawn_runners)
        pool.advance()
        yield pool
        pool.commit()


def log_command(state_dir, host, argv, returncode):
    entry = {"time": timestamp(), "host": host, "argv": list(argv), "rc": returncode}
    with open(os.path.join(state_dir, COMMANDS_LOG), "a") as log:
        log.write(json.dumps(entry) + "\n")


def init_pool(state_dir, version, hosts, resources, netns=None, fence_peer=None,
              ping_window=PING_WINDOW, resync_rate=RESYNC_RATE, net_options=None,
              handler_timeout=HANDLER_TIMEOUT):
    """Create a pool: every resource up, Connected, both Secondary, UpToDate.

    ``resources`` is a list of (name, minor, size_mib); ``netns`` maps host to the
    network namespace its processes run in; ``fence_peer`` maps host to the argv of
    the fence-peer handler its resource file names (none: the handler is "broken");
    ``ping_window`` is how many seconds a dead peer or a cut link goes unnoticed,
    by default ping-int + ping-timeout: DRBD's ack receiver waits ping-int without
    a packet before it pings, then ping-timeout for the PingAck (drbd_receiver.c
    ``drbd_ack_receiver``), and a peer that was sending until it died (a writing
    Primary) leaves the survivor exactly that long; a promote pings at once;
    ``resync_rate`` is in MiB/s; ``net_options`` overrides the running DRBD options
    (see ``options.POOL_DEFAULTS``); ``handler_timeout`` is when a handler is killed.
    """
    if version not in KERNELS:
        raise DoubleError("version must be 8.4 or 9, not %s" % version)
    if len(hosts) != 2 or hosts[0] == hosts[1]:
        raise DoubleError("a pool has exactly two distinct hosts, not %s" % ",".join(hosts))
    if not resources:
        raise DoubleError("a pool needs at least one resource")
    names = [r[0] for r in resources]
    minors = [r[1] for r in resources]
    if len(set(names)) != len(names) or len(set(minors)) != len(minors):
        raise DoubleError("resource names and minors must be unique")
    netns = dict(netns or {})
    if set(netns) - set(hosts):
        raise DoubleError("netns given for unknown host(s) %s" % sorted(set(netns) - set(hosts)))
    fence_peer = {h: list(argv) for h, argv in dict(fence_peer or {}).items()}
    if set(fence_peer) - set(hosts):
        raise DoubleError("fence_peer given for unknown host(s) %s"
                          % sorted(set(fence_peer) - set(hosts)))
    if any(not argv or not all(isinstance(a, str) for a in argv) for argv in fence_peer.values()):
        raise DoubleError("fence_peer maps a host to a non-empty list of strings (argv)")
    options = pool_options(version, net_options)
    if ping_window is None:
        ping_window = int(options["ping-int"]) + seconds(options, "ping-timeout")
    for label, value in (("ping_window", ping_window), ("resync_rate", resync_rate),
                         ("handler_timeout", handler_timeout)):
        if not isinstance(value, (int, float)) or value < 0 or (
                label != "ping_window" and value == 0):
            raise DoubleError("%s must be a positive number of %s, not %r" % (
                label, "MiB/s" if label == "resync_rate" else "seconds", value))
    if os.path.exists(os.path.join(state_dir, STATE_FILE)):
        raise DoubleError("%s already holds a pool" % state_dir)
    os.makedirs(os.path.join(state_dir, DATA_DIR), exist_ok=True)
    open(os.path.join(state_dir, KERNEL_LOG), "a").close()
    for host in hosts:
        os.makedirs(os.path.join(state_dir, host, "dev"), exist_ok=True)
    state = {"version": version, "hosts": list(hosts), "netns": netns,
             "alive": {h: True for h in hosts}, "resources": {}, "options": options,
             "fence_peer": fence_peer, "ping_window": float(ping_window),
             "resync_rate": float(resync_rate), "handler_timeout": float(handler_timeout),
             "clock_offset": 0.0, "runners": {}, "handlers": {}}
    for name, minor, size_mib in resources:
        data = os.path.join(DATA_DIR, "%s-0.img" % name)
        with open(os.path.join(state_dir, data), "wb") as image:
            image.truncate(size_mib * 1024 * 1024)
        state["resources"][name] = {
            "minor": minor, "size_mib": size_mib, "link_up": True, "connected": True,
            "split_brain": False, "last_gen": 1, "files_made": 0, "epoch": 1,
            "loss": None, "resync": None,
            "replicas": {h: {"up": True, "role": SECONDARY, "disk": UP_TO_DATE, "gen": 1,
                             "synced_gen": 1, "data": data, "standalone": False,
                             "peer_disk": DUNKNOWN, "discard_my_data": False,
                             "susp_fen": False, "fail_io": False, "adm_busy": None}
                         for h in hosts}}
    with exclusive(state_dir):
        pool = Pool(state_dir, state)
        for host in hosts:
            resfile.write_config(pool, host)
        pool.commit()
        log_command(state_dir, None, ["init", version, ",".join(hosts)], 0)


def admin(state_dir, argv, change):
    """Apply ``change(pool)`` under the lock and log it as admin command ``argv``."""
    with locked_pool(state_dir) as pool:
        result = change(pool)
        log_command(state_dir, None, argv, 0)
    return result


def cut(state_dir, resource=None):
    """Break the replication link of ``resource`` (all when None)."""
    admin(state_dir, ["net-cut"] + ([resource] if resource else []),
          lambda pool: pool.set_link(resources_named(pool, resource), False))


def heal(state_dir, resource=None):
    admin(state_dir, ["net-heal"] + ([resource] if resource else []),
          lambda pool: pool.set_link(resources_named(pool, resource), True))


def crash(state_dir, host):
    admin(state_dir, ["crash", host], lambda pool: pool.crash(host_named(pool, host)))


def revive(state_dir, host):
    admin(state_dir, ["revive", host], lambda pool: pool.revive(host_named(pool, host)))


def elapse(state_dir, seconds):
    """Let ``seconds`` pass for the model (failure detection, resync) without waiting."""
    if not isinstance(seconds, (int, float)) or seconds < 0:
        raise DoubleError("elapse takes a number of seconds >= 0, not %r" % (seconds,))

    def forward(pool):
        pool.state["clock_offset"] += seconds
        pool.advance()
    admin(state_dir, ["elapse", str(seconds)], forward)


def wait_handlers(state_dir, timeout=60.0):
    """Wait until no fence-peer handler runs in the background (each verdict applied)."""
    deadline = time.time() + timeout
    while True:
        with locked_pool(state_dir) as pool:
            if not pool.state["runners"] and not pool.state["handlers"]:
                return
        if time.time() > deadline:
            raise DoubleError("fence-peer handlers still running after %.0f s" % timeout)
        time.sleep(0.05)


def stop_handlers(state_dir):
    """Kill every fence-peer handler running in the background (their verdicts are lost)."""
    admin(state_dir, ["stop-handlers"], lambda pool: pool.stop_runners())


def show(state_dir):
    return admin(state_dir, ["show"], lambda pool: pool.describe())


def data_path(state_dir, host, resource):
    return admin(state_dir, ["data-path", host, resource],
                 lambda pool: pool.data_path(host_named(pool, host),
                                             resources_named(pool, resource)[0]))


def resources_named(pool, resource):
    if resource is None:
        return pool.resource_names()
    if resource not in pool.state["resources"]:
        raise DoubleError("unknown resource %s" % resource)
    return [resource]


def host_named(pool, host):
    if host not in pool.hosts:
        raise DoubleError("unknown host %s" % host)
    return host
