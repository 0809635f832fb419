"""The emulated drbdsetup of drbd-utils 9.22 (``drbdsetup-84`` on a DRBD 8.4 kernel).

Owns what drbdsetup prints and returns for each command the double knows, per DRBD
generation: 8.4 names a device by minor and a connection by its address pair, 9 by
resource name and peer node id; refusals carry the kernel's code and message;
``status`` comes as text or as the exact ``--json`` layout. The state changes
themselves are the model's (``model.Pool``). ``Output`` collects what any emulated
command prints, since drbdadm passes its drbdsetup steps' output through.
"""

from .errors import (E_DOUBLE, ERR_CODE_BASE, ERR_INVALID_REQUEST, ERR_MINOR_INVALID,
                     ERR_RES_NOT_KNOWN, MESSAGES, SS_NO_UP_TO_DATE_DISK, Refusal)
from .model import CONNECTED, CONNECTING, STANDALONE


class Output(object):
    """What one emulated command printed."""

    def __init__(self):
        self.stdout = []
        self.stderr = []

    def out(self, text=""):
        self.stdout.append(text + "\n")

    def err(self, text):
        self.stderr.append(text + "\n")


# drbdsetup's exit codes for the kernel's answers (drbdsetup.c check_error).
def refusal_exit_code(code):
    if code > ERR_CODE_BASE:
        return 10
    return 17 if code == SS_NO_UP_TO_DATE_DISK else 11


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
    "role": "Show the current role of a resource.",
    "cstate": "Show the current state of a connection.",
    "dstate": "Show the current disk state of a lower-level device.",
    "status": "Show the state of a resource, or of all resources.",
}
SETUP_OPTIONS = {"primary": {"--force"}, "connect": {"--discard-my-data"},
                 "status": {"--json"}}


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
    allowed = set(SETUP_OPTIONS.get(command, set()))
    if pool.version == "8.4":
        allowed -= {"--json"}
        if command == "connect":
            allowed.add("--protocol=C")  # 8.4 sets the protocol per connection
    unknown = options - allowed
    if unknown:
        output.err("drbdsetup: unrecognized option '%s'" % sorted(unknown)[0])
        return setup_usage(output, None)
    positional = [a for a in rest if not a.startswith("--")]
    if command == "status":
        return setup_status(pool, host, positional[0] if positional else "all",
                            "--json" in options, output)
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
    """Run a state change on an up resource and report a refusal like drbdsetup does."""
    try:
        if name is None or not pool.replica(host, name)["up"]:
            if pool.version == "8.4" and objname.isdigit():
                raise Refusal(ERR_MINOR_INVALID, ["unknown minor"])
            raise Refusal(ERR_RES_NOT_KNOWN, ["unknown resource"])
        action(name)
    except Refusal as refusal:
        return report_refusal(objname, refusal, output)
    return 0


def known(pool, name):
    return name if name in pool.state["resources"] else None


def setup_primary(pool, host, args, options, output):
    name = find_minor(pool, host, args[0]) if pool.version == "8.4" else known(pool, args[0])
    return change_state(pool, host, args[0], name,
                        lambda n: pool.promote(host, n, "--force" in options), output)


def setup_secondary(pool, host, args, options, output):
    name = find_minor(pool, host, args[0]) if pool.version == "8.4" else known(pool, args[0])
    return change_state(pool, host, args[0], name, lambda n: pool.demote(host, n), output)


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
            pool.disconnect(host, name)
            return 0
    return report_refusal("??", Refusal(ERR_INVALID_REQUEST, ["unknown connection"]), output)


def setup_role_9(pool, host, args, options, output):
    name = known(pool, args[0])
    if name is None or not pool.replica(host, name)["up"]:
        output.err("%s: %s" % (args[0], MESSAGES[ERR_RES_NOT_KNOWN]))
        return 10
    output.out(pool.replica(host, name)["role"])
    return 0


def setup_cstate_9(pool, host, args, options, output):
    name = known(pool, args[0])
    if (name is None or not pool.replica(host, name)["up"]
            or args[1] != str(pool.node_id(pool.peer_of(host)))):
        output.err("%s: No such connection" % args[0])
        return 10
    output.out({CONNECTED: "Connected", CONNECTING: "Connecting",
                STANDALONE: "StandAlone"}[pool.connection(host, name)])
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


SETUP_9 = {
    "primary": (1, setup_primary),
    "secondary": (1, setup_secondary),
    "down": (1, setup_down),
    "connect": (2, setup_connect),
    "disconnect": (2, setup_disconnect_9),
    "role": (1, setup_role_9),
    "cstate": (2, setup_cstate_9),
    "dstate": (1, setup_dstate_9),
}
SETUP_84 = {
    "primary": (1, setup_primary),
    "secondary": (1, setup_secondary),
    "down": (1, setup_down),
    "connect": (3, setup_connect),
    "disconnect": (2, setup_disconnect_84),
    "role": (1, minor_query_84(lambda pool, host, name: "%s/%s" % (
        pool.replica(host, name)["role"], pool.peer_role(host, name)))),
    "cstate": (1, minor_query_84(lambda pool, host, name: {
        CONNECTED: "Connected", CONNECTING: "WFConnection",
        STANDALONE: "StandAlone"}[pool.connection(host, name)])),
    "dstate": (1, minor_query_84(lambda pool, host, name: "%s/%s" % (
        pool.replica(host, name)["disk"], pool.peer_disk(host, name)))),
}


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


def status_text(pool, host, name):
    replica = pool.replica(host, name)
    lines = ["%s role:%s" % (name, replica["role"]), "  disk:%s" % replica["disk"]]
    # 8.4 has no peer names, drbdsetup-84 calls every connection "peer".
    peer_name = pool.peer_of(host) if pool.version == "9" else "peer"
    connection = pool.connection(host, name)
    if connection == CONNECTED:
        lines.append("  %s role:%s" % (peer_name, pool.peer_role(host, name)))
        lines.append("    peer-disk:%s" % pool.peer_disk(host, name))
    else:
        lines.append("  %s connection:%s" % (
            peer_name, "Connecting" if connection == CONNECTING else "StandAlone"))
    return "\n".join(lines) + "\n\n"


def status_json(pool, host, names):
    """`drbdsetup status --json` of utils 9.22, byte for byte in layout."""
    chunks = ["[\n"]
    for index, name in enumerate(names):
        if index:
            chunks.append(",\n")
        chunks.append(resource_json(pool, host, name))
    chunks.append("]\n\n")
    return "".join(chunks)


def resource_json(pool, host, name):
    replica = pool.replica(host, name)
    peer = pool.peer_of(host)
    connection = pool.connection(host, name)
    size_kib = pool.resource(name)["size_mib"] * 1024
    return (
        '{\n'
        '  "name": "%s",\n'
        '  "node-id": %d,\n'
        '  "role": "%s",\n'
        '  "suspended": false,\n'
        '  "suspended-user": false,\n'
        '  "suspended-no-data": false,\n'
        '  "suspended-fencing": false,\n'
        '  "suspended-quorum": false,\n'
        '  "force-io-failures": false,\n'
        '  "write-ordering": "flush",\n'
        '  "devices": [\n'
        '    {\n'
        '      "volume": 0,\n'
        '      "minor": %d,\n'
        '      "disk-state": "%s",\n'
        '      "client": false,\n'
        '      "quorum": true,\n'
        '      "size": %d,\n'
        '      "read": 0,\n'
        '      "written": 0,\n'
        '      "al-writes": 0,\n'
        '      "bm-writes": 0,\n'
        '      "upper-pending": 0,\n'
        '      "lower-pending": 0\n'
        '    } ],\n'
        '  "connections": [\n'
        '    {\n'
        '      "peer-node-id": %d,\n'
        '      "name": "%s",\n'
        '      "connection-state": "%s", \n'
        '      "congested": false,\n'
        '      "peer-role": "%s",\n'
        '      "ap-in-flight": 0,\n'
        '      "rs-in-flight": 0,\n'
        '      "peer_devices": [\n'
        '        {\n'
        '          "volume": 0,\n'
        '          "replication-state": "%s",\n'
        '          "peer-disk-state": "%s",\n'
        '          "peer-client": false,\n'
        '          "resync-suspended": "no",\n'
        '          "received": 0,\n'
        '          "sent": 0,\n'
        '          "out-of-sync": 0,\n'
        '          "pending": 0,\n'
        '          "unacked": 0,\n'
        '          "has-sync-details": false,\n'
        '          "has-online-verify-details": false,\n'
        '          "percent-in-sync": 100.00\n'
        '        } ]\n'
        '    } ]\n'
        '}\n'
    ) % (name, pool.node_id(host), replica["role"], pool.resource(name)["minor"],
         replica["disk"], size_kib, pool.node_id(peer), peer,
         {CONNECTED: "Connected", CONNECTING: "Connecting",
          STANDALONE: "StandAlone"}[connection],
         pool.peer_role(host, name),
         "Established" if connection == CONNECTED else "Off",
         pool.peer_disk(host, name))
