"""The two-host pool lab's command line; each command prints one JSON object.

    python -m tests.lab up --state DIR [--drbd-version 9|8.4] [--plugin-python PATH]
    python -m tests.lab status --state DIR
    python -m tests.lab designate-master HOST --state DIR [--no-storage]
    python -m tests.lab fail-host HOST --state DIR [--no-storage]
    python -m tests.lab restore-host HOST --state DIR
    python -m tests.lab cut-replication --state DIR
    python -m tests.lab heal-replication --state DIR
    python -m tests.lab down --state DIR

Until the controller exists, designate-master and fail-host also move the
storage as it will (once the new master's xapi answers after its restart:
demote the old master, promote the new one, through host.call_plugin);
--no-storage leaves that to you.
"""

import argparse
import json
import sys

from tests.lab import pool


def parser():
    top = argparse.ArgumentParser(prog="python -m tests.lab",
                                  description="Two-host XenServer pool lab for iscsi-ha.",
                                  epilog=__doc__.split("\n\n")[2],
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = top.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    up = commands.add_parser("up", help="build the pool, make hostA master and promote it")
    up.add_argument("--drbd-version", choices=["9", "8.4"], default="9")
    up.add_argument("--plugin-python", default=None,
                    help="Python the plugin runs on (default: this one)")
    up.add_argument("--elector", choices=["external", "xapi-ha"], default=pool.DEFAULT_ELECTOR,
                    help="what makes the survivor master: an external elector such as "
                         "HA-Lizard (HA off in xapi) or XenServer HA (default %(default)s)")
    commands.add_parser("status", help="pool master and each host's plugin status")
    for name, text in (("designate-master", "planned master change to HOST"),
                       ("fail-host", "HOST dies; the survivor takes over")):
        command = commands.add_parser(name, help=text)
        command.add_argument("host")
        command.add_argument("--no-storage", action="store_true",
                             help="change the master only; leave promote/demote to you")
    commands.add_parser("restore-host", help="HOST comes back as a slave").add_argument("host")
    commands.add_parser("cut-replication", help="break the DRBD link")
    commands.add_parser("heal-replication", help="reconnect the DRBD link")
    commands.add_parser("down", help="remove everything the lab made")
    for command in commands.choices.values():
        command.add_argument("--state", required=True, help="the lab's state directory")
    return top


def run(options):
    if options.command == "up":
        return pool.up(options.state, options.drbd_version, options.plugin_python,
                       options.elector)
    if options.command == "status":
        return pool.status(options.state)
    if options.command == "designate-master":
        return pool.designate_master(options.state, options.host, not options.no_storage)
    if options.command == "fail-host":
        return pool.fail_host(options.state, options.host, not options.no_storage)
    if options.command == "restore-host":
        return pool.restore_host(options.state, options.host)
    if options.command == "cut-replication":
        return pool.cut_replication(options.state)
    if options.command == "heal-replication":
        return pool.heal_replication(options.state)
    return pool.down(options.state)


def main(argv=None):
    options = parser().parse_args(argv)
    try:
        result = run(options)
    except pool.LabError as exc:
        sys.stdout.write(json.dumps({"error": str(exc)}) + "\n")
        return 1
    sys.stdout.write(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
