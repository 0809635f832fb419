"""The two-host pool lab's command line; each command prints one JSON object.

    python -m tests.lab up --state DIR [--drbd-version 9|8.4] [--plugin-python PATH]
                           [--elector external|xapi-ha] [--baseline]
    python -m tests.lab status --state DIR
    python -m tests.lab designate-master HOST --state DIR [--no-wait]
    python -m tests.lab fail-host HOST --state DIR [--no-wait] [--elector-waits-for-drbd]
    python -m tests.lab restore-host HOST --state DIR
    python -m tests.lab controller stop|start|kill HOST --state DIR
    python -m tests.lab hold-plugin HOST FN [FN ...] --state DIR
    python -m tests.lab release-plugin HOST [--unreached] --state DIR
    python -m tests.lab cut-replication --state DIR
    python -m tests.lab heal-replication --state DIR
    python -m tests.lab down --state DIR

Every host runs iscsi-ha-controller, and the lab never moves the storage:
designate-master, fail-host and restore-host change only what an elector
changes (pool roles, liveness, a host's power). designate-master and fail-host
then wait until the new master's controller has made it serve (its plugin
status says primary, the other live host's secondary) and report how long
that took; --no-wait returns as soon as the pool's master has changed.
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
    up = commands.add_parser("up", help="build the pool with hostA master, start the "
                                        "controllers, wait until hostA serves")
    up.add_argument("--drbd-version", choices=["9", "8.4"], default="9")
    up.add_argument("--plugin-python", default=None,
                    help="Python the plugin runs on (default: this one)")
    up.add_argument("--elector", choices=["external", "xapi-ha"], default=pool.DEFAULT_ELECTOR,
                    help="what makes the survivor master: an external elector such as "
                         "HA-Lizard (HA off in xapi) or XenServer HA (default %(default)s)")
    up.add_argument("--baseline", action="store_true",
                    help="configure both hosts as the polling baseline the bench compares "
                         "with: [controller] events = off, interval = 10, tickle = off, "
                         "overlap = off, [vip] duplicate_check = arping")
    commands.add_parser("status", help="pool master, each host's plugin status and "
                                       "controller")
    for name, text in (("designate-master", "planned master change to HOST"),
                       ("fail-host", "HOST dies; the elector makes the survivor master")):
        command = commands.add_parser(name, help=text)
        command.add_argument("host")
        command.add_argument("--no-wait", action="store_true",
                             help="return once the master changed, without waiting until "
                                  "the new master serves")
        if name == "fail-host":
            command.add_argument(
                "--elector-waits-for-drbd", action="store_true",
                help="the elector makes the survivor master only once its DRBD reports "
                     "the peer lost, as a real elector's longer timeout guarantees")
    commands.add_parser("restore-host", help="HOST boots again and rejoins as a slave; its "
                                             "controller starts").add_argument("host")
    command = commands.add_parser("controller", help="stop (SIGTERM), start or kill "
                                                     "(SIGKILL) HOST's controller")
    command.add_argument("action", choices=["stop", "start", "kill"])
    command.add_argument("host")
    command = commands.add_parser("hold-plugin", help="plugin calls of FN on HOST get stuck "
                                                      "before their plugin starts")
    command.add_argument("host")
    command.add_argument("fns", metavar="FN", nargs="+")
    command = commands.add_parser("release-plugin", help="the held calls on HOST go on")
    command.add_argument("host")
    command.add_argument("--unreached", action="store_true",
                         help="they end with CANNOT_CONTACT_HOST, their plugin never runs")
    commands.add_parser("cut-replication", help="break the DRBD link")
    commands.add_parser("heal-replication", help="reconnect the DRBD link")
    commands.add_parser("down", help="remove everything the lab made")
    for command in commands.choices.values():
        command.add_argument("--state", required=True, help="the lab's state directory")
    return top


def run(options):
    if options.command == "up":
        return pool.up(options.state, options.drbd_version, options.plugin_python,
                       options.elector, options.baseline)
    if options.command == "status":
        return pool.status(options.state)
    if options.command == "designate-master":
        return pool.designate_master(options.state, options.host, not options.no_wait)
    if options.command == "fail-host":
        return pool.fail_host(options.state, options.host, not options.no_wait,
                              options.elector_waits_for_drbd)
    if options.command == "restore-host":
        return pool.restore_host(options.state, options.host)
    if options.command == "controller":
        return pool.controller(options.state, options.action, options.host)
    if options.command == "hold-plugin":
        return pool.hold_plugin(options.state, options.host, options.fns)
    if options.command == "release-plugin":
        return pool.release_plugin(options.state, options.host, not options.unreached)
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
