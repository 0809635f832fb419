"""The admin API of the DRBD double: a pool's STATE directory as tests and the lab see it.

Owns creating a pool (``init_pool``), the exclusive lock every command takes on
STATE, the audit trail ``STATE/commands.log``, and the events tests inflict from
outside DRBD's control: cutting and healing the replication link, crashing and
reviving a host, and reading the model (``show``, ``data_path``).
"""

import contextlib
import fcntl
import json
import os

from .errors import DoubleError
from .model import DATA_DIR, KERNELS, SECONDARY, STATE_FILE, UP_TO_DATE, Pool, timestamp

LOCK_FILE = ".lock"
COMMANDS_LOG = "commands.log"


@contextlib.contextmanager
def exclusive(state_dir):
    """STATE is ours until the block ends: both hosts' commands take turns on one pool."""
    with open(os.path.join(state_dir, LOCK_FILE), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@contextlib.contextmanager
def locked_pool(state_dir):
    """The pool, exclusively ours until the block ends; saved only if the block succeeds."""
    if not os.path.isfile(os.path.join(state_dir, STATE_FILE)):
        raise DoubleError("%s is not a DRBD double state directory (run init first)" % state_dir)
    with exclusive(state_dir):
        pool = Pool.load(state_dir)
        yield pool
        pool.refresh_devices()
        pool.save()


def log_command(state_dir, host, argv, returncode):
    entry = {"time": timestamp(), "host": host, "argv": list(argv), "rc": returncode}
    with open(os.path.join(state_dir, COMMANDS_LOG), "a") as log:
        log.write(json.dumps(entry) + "\n")


def init_pool(state_dir, version, hosts, resources, netns=None):
    """Create a pool: every resource up, Connected, both Secondary, UpToDate.

    ``resources`` is a list of (name, minor, size_mib); ``netns`` maps host to the
    network namespace its processes run in.
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
    if os.path.exists(os.path.join(state_dir, STATE_FILE)):
        raise DoubleError("%s already holds a pool" % state_dir)
    os.makedirs(os.path.join(state_dir, DATA_DIR), exist_ok=True)
    for host in hosts:
        os.makedirs(os.path.join(state_dir, host, "dev"), exist_ok=True)
    state = {"version": version, "hosts": list(hosts), "netns": netns,
             "alive": {h: True for h in hosts}, "resources": {}}
    for name, minor, size_mib in resources:
        data = os.path.join(DATA_DIR, "%s-0.img" % name)
        with open(os.path.join(state_dir, data), "wb") as image:
            image.truncate(size_mib * 1024 * 1024)
        state["resources"][name] = {
            "minor": minor, "size_mib": size_mib, "link_up": True, "connected": True,
            "split_brain": False, "last_gen": 1, "files_made": 0,
            "replicas": {h: {"up": True, "role": SECONDARY, "disk": UP_TO_DATE, "gen": 1,
                             "synced_gen": 1, "data": data, "standalone": False,
                             "peer_fenced": False, "discard_my_data": False}
                         for h in hosts}}
    with exclusive(state_dir):
        pool = Pool(state_dir, state)
        pool.refresh_devices()
        pool.save()
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
