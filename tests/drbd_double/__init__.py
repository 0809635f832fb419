"""The DRBD double: drbdadm/drbdsetup stand-ins for a two-host pool without a kernel module.

Owns everything about simulated DRBD in tests and the two-host lab (Python 3 only),
and exports what its users call. Read it module by module:

* ``model``: one pool (two hosts, N resources) kept in a STATE directory as
  ``state.json`` plus one data file per replica; roles, disk states, generations,
  the kernel's state checks, time (evaluated lazily by every command);
* ``replication``: the link between the replicas: handshake, failure detection,
  polite disconnects, resync over time, split brain; ``states``: DRBD's state names;
* ``setrole``: the kernel's promote retry loop, with its waits, fencing and --force;
* ``fencing``: the fence-peer handler, run like the kernel and drbdadm run it
  (environment, network namespace, timeout, verdicts), synchronously or in a
  detached runner;
* ``options``: the running DRBD options and ``drbdsetup show``;
* ``status``: ``drbdsetup status`` as text and JSON; ``generations``: ``get-gi``'s
  data generation UUIDs;
* ``resfile``: each host's resource file and ``drbdadm dump`` of it;
* ``devices``: the device node and backing disk each host sees;
* ``holders``: which processes hold a device open, and how (a Primary with
  writers cannot demote);
* ``drbdsetup`` and ``drbdadm``: the emulated command lines, with the output,
  messages and exit codes of drbd-utils 9.22 on a DRBD 8.4.11 or 9.1.17 kernel;
* ``admin``: creating a pool, the ``flock`` every command takes, the audit trail
  ``STATE/commands.log``, and breaking a pool from outside (net cut/heal, crash,
  revive, elapse), waiting for or stopping background handlers, reading it
  (show, data-path);
* ``cli``: running one emulated command, the wrapper scripts that act as a host,
  and ``python3 -m tests.drbd_double``; ``commandline``: its admin commands;
* ``errors``: the double's own error and the kernel's refusals with their codes.

Real tools are imitated only as far as the iscsi-ha code and lab need; anything
else fails loudly with exit code 20.
"""

# Each wrapper call of drbdadm/drbdsetup is a new interpreter: the names are
# imported on first use, so that a call loads only the modules it runs (the
# double's own start is in every measured switchover; real drbdadm starts in ms).
_EXPORTS = {
    "COMMANDS_LOG": "admin", "LOCK_FILE": "admin", "crash": "admin", "cut": "admin",
    "data_path": "admin", "elapse": "admin", "heal": "admin", "init_pool": "admin",
    "revive": "admin", "show": "admin", "stop_handlers": "admin", "wait_handlers": "admin",
    "install_wrappers": "cli", "main": "cli", "run_tool": "cli", "DoubleError": "errors",
    "KERNEL_LOG": "model", "STATE_FILE": "model", "DATA_DIR": "states",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError("module %r has no attribute %r" % (__name__, name))
    import importlib
    return getattr(importlib.import_module("." + _EXPORTS[name], __name__), name)
