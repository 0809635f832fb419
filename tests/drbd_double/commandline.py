"""The double's admin command line: ``python3 -m tests.drbd_double COMMAND --state STATE``.

``init``, ``install-wrappers``, ``net-cut``, ``net-heal``, ``crash``, ``revive``,
``elapse``, ``wait-handlers``, ``stop-handlers``, ``show``, ``data-path``, and the
detached runner of an asynchronous fence-peer handler (``fence-runner``, started
by the double itself). Apart from ``cli`` so that an emulated drbdadm or
drbdsetup call does not load argparse.
"""

import argparse
import json
import os
import re
import shlex

from . import fencing
from .admin import (HANDLER_TIMEOUT, PING_WINDOW, RESYNC_RATE, crash, cut, data_path, elapse,
                    heal, init_pool, locked_pool, revive, show, stop_handlers, wait_handlers)
from .cli import DESCRIPTION, install_wrappers
from .model import KERNELS

RESOURCE_SPEC = re.compile(r"^([A-Za-z0-9_.-]+):(\d+):(\d+)$")


def resource_spec(text):
    match = RESOURCE_SPEC.match(text)
    if not match or int(match.group(3)) < 1:
        raise argparse.ArgumentTypeError("expected NAME:MINOR:SIZE_MIB, got %r" % text)
    return match.group(1), int(match.group(2)), int(match.group(3))


def pair_spec(usage):
    """An argument type for ``NAME=VALUE`` (``usage`` says which, e.g. ``HOST=NETNS``)."""
    def parse(text):
        name, _, value = text.partition("=")
        if not name or not value:
            raise argparse.ArgumentTypeError("expected %s, got %r" % (usage, text))
        return name, value
    return parse


def fence_peer_spec(text):
    host, _, command = text.partition("=")
    try:
        argv = shlex.split(command)
    except ValueError as error:
        raise argparse.ArgumentTypeError("bad COMMAND in %r: %s" % (text, error))
    if not host or not argv:
        raise argparse.ArgumentTypeError("expected HOST=COMMAND, got %r" % text)
    return host, argv


def seconds_spec(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a number of seconds, got %r" % text)
    if value < 0:
        raise argparse.ArgumentTypeError("expected seconds >= 0, got %r" % text)
    return value


def admin_parser():
    parser = argparse.ArgumentParser(prog="python3 -m tests.drbd_double", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True)
    init = commands.add_parser("init", help="create a pool")
    init.add_argument("--version", required=True, choices=sorted(KERNELS))
    init.add_argument("--hosts", required=True, type=lambda t: t.split(","))
    init.add_argument("--resource", required=True, action="append", type=resource_spec)
    init.add_argument("--netns", action="append", default=[], type=pair_spec("HOST=NETNS"))
    init.add_argument("--fence-peer", action="append", default=[], type=fence_peer_spec,
                      metavar="HOST=COMMAND",
                      help="the fence-peer handler HOST's resource file names (shell words)")
    init.add_argument("--ping-window", type=seconds_spec, default=PING_WINDOW,
                      metavar="SECONDS", help="how long a dead peer or cut link goes unnoticed "
                           "(default: ping-int + ping-timeout, as DRBD)")
    init.add_argument("--resync-rate", type=seconds_spec, default=RESYNC_RATE,
                      metavar="MIB_PER_S")
    init.add_argument("--handler-timeout", type=seconds_spec, default=HANDLER_TIMEOUT,
                      metavar="SECONDS")
    init.add_argument("--net-option", action="append", default=[], type=pair_spec("KEY=VALUE"),
                      metavar="KEY=VALUE", help="protocol, fencing, allow-two-primaries, "
                      "ping-int, ping-timeout (and on 9 auto-promote, auto-promote-timeout)")
    wrappers = commands.add_parser("install-wrappers", help="write drbdadm/drbdsetup scripts")
    wrappers.add_argument("--host", required=True)
    wrappers.add_argument("--bin", required=True)
    for name in ("net-cut", "net-heal"):
        commands.add_parser(name).add_argument("resource", nargs="?")
    for name in ("crash", "revive"):
        commands.add_parser(name).add_argument("host")
    commands.add_parser("elapse", help="let time pass for the model").add_argument(
        "seconds", type=seconds_spec)
    commands.add_parser("wait-handlers", help="wait for background fence-peer handlers")
    commands.add_parser("stop-handlers", help="kill background fence-peer handlers")
    runner = commands.add_parser("fence-runner", help="(internal) run an asynchronous handler")
    runner.add_argument("--token", required=True)
    commands.add_parser("show", help="JSON dump of the whole model")
    paths = commands.add_parser("data-path", help="a host's replica file")
    paths.add_argument("host")
    paths.add_argument("resource")
    for sub in commands.choices.values():
        sub.add_argument("--state", required=True)
    return parser


def run_admin(argv, stdout):
    options = admin_parser().parse_args(argv)
    state = options.state
    if options.command == "init":
        init_pool(state, options.version, options.hosts, options.resource, dict(options.netns),
                  fence_peer=dict(options.fence_peer), ping_window=options.ping_window,
                  resync_rate=options.resync_rate, net_options=dict(options.net_option),
                  handler_timeout=options.handler_timeout)
    elif options.command == "install-wrappers":
        install_wrappers(state, options.host, options.bin)
    elif options.command == "net-cut":
        cut(state, options.resource)
    elif options.command == "net-heal":
        heal(state, options.resource)
    elif options.command == "crash":
        crash(state, options.host)
    elif options.command == "revive":
        revive(state, options.host)
    elif options.command == "elapse":
        elapse(state, options.seconds)
    elif options.command == "wait-handlers":
        wait_handlers(state)
    elif options.command == "stop-handlers":
        stop_handlers(state)
    elif options.command == "fence-runner":
        run_fence_runner(state, options.token)
    elif options.command == "show":
        stdout.write(json.dumps(show(state), indent=2, sort_keys=True) + "\n")
    elif options.command == "data-path":
        stdout.write(data_path(state, options.host, options.resource) + "\n")
    return 0


def run_fence_runner(state_dir, token):
    """The kernel's asynchronous fence-peer thread: run the handler without the lock,
    then apply its verdict under the lock (unless the request was withdrawn)."""
    with locked_pool(state_dir) as pool:
        runner = pool.state["runners"].get(token)
        if runner is None:
            return
        runner["pid"] = os.getpid()
        host, name, epoch = runner["host"], runner["resource"], runner["epoch"]
        request = None
        if pool.is_up(host, name) and fencing.before_handler(pool, host, name) is None:
            request = fencing.prepare(pool, host, name, "NetworkFailure")
        if request is None:
            del pool.state["runners"][token]
            return
    code = fencing.run(request, lambda group: record_handler(state_dir, group, host))
    with locked_pool(state_dir) as pool:
        if pool.state["runners"].pop(token, None) and pool.is_up(host, name):
            fencing.apply_verdict(pool, host, name, code, epoch)


def record_handler(state_dir, group, host):
    with locked_pool(state_dir) as pool:
        pool.state["handlers"][str(group)] = {"host": host}
