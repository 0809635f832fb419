"""The emulated drbdsetup of drbd-utils 9.22 (``drbdsetup-84`` on a DRBD 8.4 kernel).

Owns what drbdsetup prints and returns for each command the double knows, per DRBD
generation: 8.4 names a device by minor and a connection by its address pair, 9 by
resource name and peer node id; refusals carry the kernel's code and message;
``status`` (``status``) and ``show`` (``options``) print each generation's layout.
The state changes themselves are the model's (``model.Pool``, ``setrole``). ``Output`` collects what any emulated command prints, since drbdadm
passes its drbdsetup steps' output through.
"""

from . import setrole
from .generations import get_gi
from .errors import (E_DOUBLE, ERR_CODE_BASE, ERR_INVALID_REQUEST, ERR_MINOR_INVALID,
                     ERR_RES_NOT_KNOWN, MESSAGES, DoubleError, Refusal, refusal_exit_code)
from .options import show_84, show_9
from .states import CONNECTED, CONNECTING, STANDALONE
from .status import CSTATE_9, status_json, status_text


class Output(object):
    """What one emulated command printed."""

    def __init__(self):
        self.stdout = []
        self.stderr = []

    def out(self, text=""):
        self.stdout.append(text + "\n")

    def err(self, text):
        self.stderr.append(text + "\n")


def report_refusal(objname, refusal, output):
    if refusal.code > ERR_CODE_BASE:
        output.err("%s: Failure: (%d) %s" % (objname, refusal.code, MESSAGES[refusal.code]))
    else:
        output.err("%s: State change failed: (%d) %s"
                   % (objname, refusal.code, MESSAGES[refusal.code]))
    if refusal.info:
        output.err("additional info from kernel:")
        for line in refusal.info:
            output.err(line)
    return refusal_exit_code(refusal.code)


SETUP_COMMANDS = {
    "primary": "Change the role of a node in a resource to primary.",
    "secondary": "Change the role of a node in a resource to secondary.",
    "connect": "Attempt to (re)establish a replication link to a peer host.",
    "disconnect": "Unconnect from a peer host.",
    "down": "Take a resource down.",
    "outdate": "Mark the data on a lower-level device as outdated.",
    "resume-io": "Resume IO on a replicated device.",
    "role": "Show the current role of a resource.",
    "cstate": "Show the current state of a connection.",
    "dstate": "Show the current disk state of a lower-level device.",
    "get-gi": "Show the data generation identifiers of a device.",
    "status": "Show the state of a resource, or of all resources.",
    "show": "Show the current configuration of a resource, or of all resources.",
}
SETUP_OPTIONS = {"primary": {"--force"}, "secondary": {"--force"},
                 "connect": {"--discard-my-data"}, "status": {"--json"},
                 "show": {"--show-defaults"}}
NOT_EMULATED = {"show": {"--json"}}


def setup_usage(output, reason):
    output.out("drbdsetup - Configure the DRBD kernel module.\n")
    output.out("USAGE: drbdsetup command {arguments} [options]\n\nCommands:")
    for command in sorted(SETUP_COMMANDS):
        output.out("    %s - %s" % (command, SETUP_COMMANDS[command]))
    output.out("\nUse 'drbdsetup help command' for command-specific help.\n")
    if reason:
        output.out("\n%s" % reason)
    return E_DOUBLE


def run_drbdsetup(pool, host, args, output):
    """``drbdsetup ARGS`` (``drbdsetup-84`` on an 8.4 kernel) on ``host``; the exit code."""
    if not args or args[0] not in SETUP_COMMANDS:
        return setup_usage(output, "invalid command")
    command, rest = args[0], args[1:]
    options = {a for a in rest if a.startswith("--")}
    if options & NOT_EMULATED.get(command, set()):
        raise DoubleError("drbdsetup %s %s is not emulated"
                          % (command, " ".join(sorted(options & NOT_EMULATED[command]))))
    allowed = set(SETUP_OPTIONS.get(command, set()))
    if pool.version == "8.4":
        allowed -= {"--json"}
        if command == "secondary":
            allowed.discard("--force")  # 8.4 cannot force a demotion
        if command == "connect":
            # 8.4 sets the protocol per connection (the double's is the pool's).
            allowed.add("--protocol=%s" % pool.options["protocol"])
    unknown = options - allowed
    if unknown:
        output.err("drbdsetup: unrecognized option '%s'" % sorted(unknown)[0])
        return setup_usage(output, None)
    positional = [a for a in rest if not a.startswith("--")]
    if command in ("status", "show"):
        objname = positional[0] if positional else "all"
        if command == "status":
            return setup_status(pool, host, objname, "--json" in options, output)
        return setup_show(pool, host, objname, "--show-defaults" in options, output)
    handler = SETUP_84 if pool.version == "8.4" else SETUP_9
    arity, function = handler[command]
    if len(positional) != arity:
        output.err("Missing argument %d to command" % (len(positional) + 1)
                   if len(positional) < arity else "Excess arguments: %s"
                   % " ".join(positional[arity:]))
        return E_DOUBLE
    return function(pool, host, positional, options, output)


def find_minor(pool, host, objname):
    """The resource of minor ``objname`` if it is up on ``host``, else None."""
    name = pool.resource_by_minor(int(objname)) if objname.isdigit() else None
    if name is not None and pool.replica(host, name)["up"]:
        return name
    return None


def change_state(pool, host, objname, name, action, output):
    """Run a state change on an up resource and report a refusal like drbdsetup does.

    The kernel serialises configuration requests per resource (adm_mutex).
    """
    try:
        if name is None or not pool.replica(host, name)["up"]:
            if objname.isdigit():
                raise Refusal(ERR_MINOR_INVALID, ["unknown minor"])
            raise Refusal(ERR_RES_NOT_KNOWN, ["unknown resource"])
        with pool.adm_mutex(host, name):
            action(name)
    except Refusal as refusal:
        return report_refusal(objname, refusal, output)
    return 0


def known(pool, name):
    return name if name in pool.state["resources"] else None


def by_role_object(pool, host, objname):
    """primary/secondary name a device by minor on 8.4, a resource on 9."""
    return find_minor(pool, host, objname) if pool.version == "8.4" else known(pool, objname)


def setup_primary(pool, host, args, options, output):
    return change_state(pool, host, args[0], by_role_object(pool, host, args[0]),
                        lambda n: setrole.promote(pool, host, n, "--force" in options), output)


def setup_secondary(pool, host, args, options, output):
    return change_state(pool, host, args[0], by_role_object(pool, host, args[0]),
                        lambda n: pool.demote(host, n, "--force" in options), output)


def setup_down(pool, host, args, options, output):
    name = known(pool, args[0])
    if name is None or not pool.replica(host, name)["up"]:
        return 0  # drbdsetup down is "missing_ok"
    return change_state(pool, host, args[0], name, lambda n: pool.take_down(host, n), output)


def setup_connect(pool, host, args, options, output):
    return change_state(pool, host, args[0], known(pool, args[0]),
                        lambda n: pool.connect(host, n, "--discard-my-data" in options), output)


def setup_disconnect_9(pool, host, args, options, output):
    return change_state(pool, host, args[0], known(pool, args[0]),
                        lambda n: pool.disconnect(host, n), output)


def setup_disconnect_84(pool, host, args, options, output):
    """8.4 names the connection by its address pair and has no resource name to print."""
    for name in pool.resource_names():
        if (args == [pool.address(host, name), pool.address(pool.peer_of(host), name)]
                and pool.replica(host, name)["up"]):
            return change_state(pool, host, name, name, lambda n: pool.disconnect(host, n),
                                output)
    return report_refusal("??", Refusal(ERR_INVALID_REQUEST, ["unknown connection"]), output)


def setup_outdate(pool, host, args, options, output):
    return change_state(pool, host, args[0], find_minor(pool, host, args[0]),
                        lambda n: pool.outdate(host, n), output)


def setup_resume_io(pool, host, args, options, output):
    return change_state(pool, host, args[0], find_minor(pool, host, args[0]),
                        lambda n: pool.resume_io(host, n), output)


def setup_role_9(pool, host, args, options, output):
    name = known(pool, args[0])
    if name is None or not pool.replica(host, name)["up"]:
        output.err("%s: %s" % (args[0], MESSAGES[ERR_RES_NOT_KNOWN]))
        return 10
    output.out(pool.replica(host, name)["role"])
    return 0


def setup_get_gi_9(pool, host, args, options, output):
    """get-gi RESOURCE PEER_NODE_ID VOLUME (drbdsetup.c show_or_get_gi_cmd)."""
    name = known(pool, args[0])
    if (name is None or not pool.replica(host, name)["up"] or args[2] != "0"
            or args[1] != str(pool.node_id(pool.peer_of(host)))):
        output.err("%s: No such peer device" % args[0])
        return 10
    output.out(get_gi(pool, host, name))
    return 0


def setup_get_gi_84(pool, host, args, options, output):
    name = find_minor(pool, host, args[0])
    if name is None:
        return report_refusal(args[0], Refusal(ERR_MINOR_INVALID, ["unknown minor"]), output)
    output.out(get_gi(pool, host, name))
    return 0


CSTATE_84 = {CONNECTED: "Connected", CONNECTING: "WFConnection", STANDALONE: "StandAlone"}


def setup_cstate_9(pool, host, args, options, output):
    name = known(pool, args[0])
    if (name is None or not pool.replica(host, name)["up"]
            or args[1] != str(pool.node_id(pool.peer_of(host)))):
        output.err("%s: No such connection" % args[0])
        return 10
    output.out(CSTATE_9[pool.connection(host, name)])
    return 0


def setup_dstate_9(pool, host, args, options, output):
    name = find_minor(pool, host, args[0])
    if name is None:
        output.err("%s: No such device" % args[0])
        return 10
    output.out("%s/%s" % (pool.replica(host, name)["disk"], pool.peer_disk(host, name)))
    return 0


def minor_query_84(show):
    """role/cstate/dstate of drbdsetup-84: one line about the minor, or 'unknown minor'."""
    def query(pool, host, args, options, output):
        name = find_minor(pool, host, args[0])
        if name is None:
            return report_refusal(args[0], Refusal(ERR_MINOR_INVALID, ["unknown minor"]), output)
        output.out(show(pool, host, name))
        return 0
    return query


def cstate_84(pool, host, name):
    """8.4's connection state is the device's: a resync shows as SyncSource/SyncTarget."""
    return pool.resync_role(host, name) or CSTATE_84[pool.connection(host, name)]


SETUP_9 = {
    "primary": (1, setup_primary),
    "secondary": (1, setup_secondary),
    "down": (1, setup_down),
    "connect": (2, setup_connect),
    "disconnect": (2, setup_disconnect_9),
    "outdate": (1, setup_outdate),
    "resume-io": (1, setup_resume_io),
    "role": (1, setup_role_9),
    "cstate": (2, setup_cstate_9),
    "dstate": (1, setup_dstate_9),
    "get-gi": (3, setup_get_gi_9),
}
SETUP_84 = {
    "primary": (1, setup_primary),
    "secondary": (1, setup_secondary),
    "down": (1, setup_down),
    "connect": (3, setup_connect),
    "disconnect": (2, setup_disconnect_84),
    "outdate": (1, setup_outdate),
    "resume-io": (1, setup_resume_io),
    "role": (1, minor_query_84(lambda pool, host, name: "%s/%s" % (
        pool.replica(host, name)["role"], pool.peer_role(host, name)))),
    "cstate": (1, minor_query_84(cstate_84)),
    "dstate": (1, minor_query_84(lambda pool, host, name: "%s/%s" % (
        pool.replica(host, name)["disk"], pool.peer_disk(host, name)))),
    "get-gi": (1, setup_get_gi_84),
}


# -- status

def setup_status(pool, host, objname, as_json, output):
    names = [n for n in pool.resource_names() if pool.replica(host, n)["up"]]
    if not names and not as_json and pool.version == "9":
        output.out("# No currently configured DRBD found.")
    shown = [n for n in names if objname in ("all", n)]
    if as_json:
        output.stdout.append(status_json(pool, host, shown))
    else:
        for name in shown:
            output.stdout.append(status_text(pool, host, name))
    if objname != "all" and not shown:
        output.err("%s: No such resource" % objname)
        return 10
    return 0


# -- show

def setup_show(pool, host, objname, show_defaults, output):
    names = [n for n in pool.resource_names() if pool.replica(host, n)["up"]]
    if pool.version == "8.4":
        if objname != "all" and objname not in names:
            return report_refusal(objname, Refusal(ERR_RES_NOT_KNOWN, ["unknown resource"]),
                                  output)
        for name in names:
            if objname in ("all", name):
                output.stdout.append(show_84(pool, host, name, show_defaults))
        return 0
    if not names:
        output.out("# No currently configured DRBD found.")
    for name in names:
        if objname in ("all", name):
            output.stdout.append(show_9(pool, host, name, show_defaults))
    return 0
