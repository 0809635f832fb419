"""The emulated drbdadm of drbd-utils 9.22 on a DRBD 8.4.11 or 9.1.17 kernel.

Owns drbdadm's command line (general and command options, resource names, "all"),
its usage and version output, and how each command becomes drbdsetup steps as
the real drbdadm runs them, including its way of reporting a failed step and the
commands it answers itself or with drbdmeta (``up``, ``adjust``, ``sh-dev``,
``dump``, ``dstate`` of a down resource, ``outdate`` of one that is not attached).
"""

from . import resfile
from .drbdsetup import Output, report_refusal, run_drbdsetup
from .errors import DoubleError, Refusal
from .generations import get_gi
from .model import KERNELS
from .states import CONSISTENT, KNOWN_STALE, UP_TO_DATE

UTILS_VERSION = "9.22.0"
UTILS_VERSION_CODE = 0x091600
# What `drbdadm --version` of the Debian drbd-utils 9.22.0 package prints as its build tag.
BUILDTAG = ("GIT-hash:\\ 409097fe02187f83790b88ac3e0d94f3c167adab\\ reproducible\\ build\\,"
            "\\ 2023-01-09\\ 14:51:18")
# drbdadm of utils 9.x hands an 8.4 kernel to drbdadm-84, which runs drbdsetup-84 by name.
SETUP_TOOL = {"8.4": "drbdsetup-84", "9": "drbdsetup"}
E_USAGE = 1

ADM_COMMANDS = ("primary", "secondary", "up", "down", "connect", "disconnect", "adjust",
                "outdate", "resume-io", "role", "cstate", "dstate", "get-gi", "status", "sh-dev",
                "sh-ll-dev", "dump")
ADM_COMMAND_OPTIONS = {"primary": {"--force"}, "secondary": {"--force"},
                       "connect": {"--discard-my-data"}}
# drbdadm-84 cannot force a demotion.
ADM_COMMAND_OPTIONS_84 = dict(ADM_COMMAND_OPTIONS, secondary=set())
# Commands that act on every resource when none is named.
ALL_BY_DEFAULT = ("status", "dump")
ALL_COMMAND_OPTIONS = set().union(*ADM_COMMAND_OPTIONS.values())
IGNORED_GENERAL_OPTIONS = {"-c", "--config-file"}  # the double's state is the config
UNEMULATED_OPTIONS = {"-d", "--dry-run", "-v", "--verbose", "-S", "--stacked", "-s",
                      "--drbdsetup", "-m", "--drbdmeta", "-p", "--drbd-proxy-ctl", "-n",
                      "--sh-varname", "-P", "--peer", "-W", "--setup-option", "-t",
                      "--config-to-test", "-E", "--config-to-exclude", "-h", "--help"}


def adm_usage(pool, output, command, reason):
    output.out("\nUSAGE: drbdadm %s [OPTION...] {all|RESOURCE...}\n"
               % (command or "COMMAND"))
    output.out("Version: %s (api:%d)" % (UTILS_VERSION, KERNELS[pool.version]["api"]))
    output.out("GIT-hash: 409097fe02187f83790b88ac3e0d94f3c167adab reproducible build, "
               "2023-01-09 14:51:18\n")
    output.out(reason)
    return E_USAGE


def adm_version(pool, output):
    kernel = KERNELS[pool.version]
    output.out("DRBDADM_BUILDTAG=%s" % BUILDTAG)
    output.out("DRBDADM_API_VERSION=%d" % kernel["api"])
    output.out("DRBD_KERNEL_VERSION_CODE=0x%06x" % kernel["code"])
    if pool.version == "9":
        output.out("DRBD_KERNEL_VERSION=%s" % kernel["name"])
    output.out("DRBDADM_VERSION_CODE=0x%06x" % UTILS_VERSION_CODE)
    output.out("DRBDADM_VERSION=%s" % UTILS_VERSION)
    return 0


def parse_adm_args(args):
    """(command, resources, checked_options, passed_options), or the unknown option.

    Command options before a "--" are checked against the command; those after it
    go to drbdsetup unchecked (and drbdadm 9.22 drops the ones the command lacks).
    """
    command, resources, checked, passed, after_dashes = None, [], set(), set(), False
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        if arg == "--":
            after_dashes = True
        elif arg in IGNORED_GENERAL_OPTIONS:
            index += 1
        elif arg.startswith("--config-file="):
            continue
        elif arg.split("=")[0] in UNEMULATED_OPTIONS:
            raise DoubleError("drbdadm option %s is not emulated" % arg)
        elif arg.startswith("-") and after_dashes:
            passed.add(arg)
        elif arg in ALL_COMMAND_OPTIONS:
            checked.add(arg)
        elif arg.startswith("-"):
            return arg
        elif command is None:
            command = arg
        else:
            resources.append(arg)
    return command, resources, checked, passed


def run_drbdadm(pool, host, args, output):
    """``drbdadm ARGS`` on ``host``; the exit code."""
    if "--version" in args or "-V" in args:
        return adm_version(pool, output)
    parsed = parse_adm_args(args)
    if isinstance(parsed, str):
        output.err("drbdadm: unrecognized option '%s'" % parsed)
        output.err("try 'drbdadm help'")
        return E_USAGE
    command, resources, checked, passed = parsed
    if command is None:
        return adm_usage(pool, output, None, "No command specified")
    if command not in ADM_COMMANDS:
        output.err("drbdadm: Unknown command '%s'" % command)
        return E_USAGE
    table = ADM_COMMAND_OPTIONS_84 if pool.version == "8.4" else ADM_COMMAND_OPTIONS
    allowed = table.get(command, set())
    if checked - allowed:
        output.err("drbdadm: unrecognized option '%s'" % sorted(checked - allowed)[0])
        output.err("try 'drbdadm help %s'" % command)
        return E_USAGE
    command_options = (checked | passed) & allowed
    if command == "status" and resources in ([], ["all"]):
        return run_setup_step(pool, host, ["status"], output)
    if not resources and command in ALL_BY_DEFAULT:
        resources = ["all"]
    if not resources:
        return adm_usage(pool, output, command, "No resource names specified")
    if resources == ["all"]:
        names = pool.resource_names()
    else:
        for name in resources:
            if name not in pool.state["resources"]:
                output.err("'%s' not defined in your config (for this host)." % name)
                return E_USAGE
        names = resources
    worst = 0
    for name in names:
        worst = max(worst, ADM_ACTIONS[command](pool, host, name, command_options, output))
    return worst


def run_setup_step(pool, host, setup_args, output):
    """Run drbdsetup as drbdadm does: a failure >= 10 is reported with the command line."""
    code = run_drbdsetup(pool, host, setup_args, output)
    if code >= 10:
        output.err("Command '%s' terminated with exit code %d"
                   % (" ".join([SETUP_TOOL[pool.version]] + setup_args), code))
    return code


def object_name(pool, name):
    """How drbdsetup addresses the resource: 8.4 by minor, 9 by name."""
    return str(pool.resource(name)["minor"]) if pool.version == "8.4" else name


def connection_args(pool, host, name):
    """The arguments that name the replication link on the drbdsetup command line."""
    peer = pool.peer_of(host)
    if pool.version == "8.4":
        return [pool.address(host, name), pool.address(peer, name)]
    return [str(pool.node_id(peer))]


def adm_primary(pool, host, name, options, output):
    return run_setup_step(pool, host, ["primary", object_name(pool, name)] + sorted(options),
                          output)


def adm_secondary(pool, host, name, options, output):
    return run_setup_step(pool, host, ["secondary", object_name(pool, name)] + sorted(options),
                          output)


def adm_down(pool, host, name, options, output):
    return run_setup_step(pool, host, ["down", name], output)


def adm_connect(pool, host, name, options, output):
    extra = ["--protocol=%s" % pool.options["protocol"]] if pool.version == "8.4" else []
    return run_setup_step(pool, host, ["connect", name] + connection_args(pool, host, name)
                          + extra + sorted(options), output)


def adm_disconnect(pool, host, name, options, output):
    target = [] if pool.version == "8.4" else [name]
    return run_setup_step(pool, host, ["disconnect"] + target
                          + connection_args(pool, host, name), output)


def adm_role(pool, host, name, options, output):
    return run_setup_step(pool, host, ["role", object_name(pool, name)], output)


def adm_cstate(pool, host, name, options, output):
    target = [] if pool.version == "8.4" else connection_args(pool, host, name)
    return run_setup_step(pool, host, ["cstate", object_name(pool, name)] + target, output)


def adm_dstate(pool, host, name, options, output):
    """drbdsetup dstate, and for a resource that is down what drbdmeta reads on disk."""
    setup_output = Output()
    code = run_drbdsetup(pool, host, ["dstate", str(pool.resource(name)["minor"])], setup_output)
    output.stdout.extend(setup_output.stdout)
    # drbdadm shows drbdsetup's complaints only for state-change errors, else asks drbdmeta.
    if code in (11, 17):
        output.stderr.extend(setup_output.stderr)
    if code in (0, 11, 17):
        return code
    replica = pool.replica(host, name)
    if replica["disk"] in (UP_TO_DATE, CONSISTENT):
        # The metadata knows it was UpToDate; only a known-stale peer makes it still so.
        output.out(UP_TO_DATE if replica["peer_disk"] in KNOWN_STALE else CONSISTENT)
    else:
        output.out(replica["disk"])
    return 0


def adm_get_gi(pool, host, name, options, output):
    """drbdsetup get-gi with its complaints silenced; for a resource that is down, drbdmeta
    reads the same identifiers from the metadata (drbdadm_main.c adm_setup_and_meta)."""
    if pool.replica(host, name)["up"]:
        target = (connection_args(pool, host, name) + ["0"] if pool.version == "9" else [])
        return run_drbdsetup(pool, host, ["get-gi", object_name(pool, name)] + target, output)
    output.out(get_gi(pool, host, name))
    return 0


def adm_outdate(pool, host, name, options, output):
    """drbdsetup outdate with its complaints silenced; where it refuses, drbdmeta tries
    (it can outdate only a disk that is not attached)."""
    code = run_drbdsetup(pool, host, ["outdate", str(pool.resource(name)["minor"])], Output())
    if code == 17:  # a Primary cannot be outdated
        return code
    if code == 5:  # Inconsistent, or diskless
        return 5 if drbdmeta_outdate(pool, host, name, output) else 0
    if code:
        return drbdmeta_outdate(pool, host, name, output)
    return 0


def drbdmeta_outdate(pool, host, name, output):
    minor = str(pool.resource(name)["minor"])
    argv = ["drbdmeta", minor, "v09" if pool.version == "9" else "v08",
            pool.disk_path(host, name), "internal", "outdate"]
    if pool.replica(host, name)["up"]:
        output.err("Device '%s' is configured!" % minor)
        code = 20
    elif not pool.outdate_metadata(host, name):
        output.err("Device is inconsistent.")
        code = 5
    else:
        code = 0
    if code >= 10:
        output.err("Command '%s' terminated with exit code %d" % (" ".join(argv), code))
    return code


def adm_resume_io(pool, host, name, options, output):
    return run_setup_step(pool, host, ["resume-io", str(pool.resource(name)["minor"])], output)


def adm_dump(pool, host, name, options, output):
    output.stdout.append(resfile.dump(pool, host, name))
    return 0


def adm_up(pool, host, name, options, output):
    try:
        pool.bring_up(host, name)
    except Refusal as refusal:
        minor = pool.resource(name)["minor"]
        new_minor = ["new-minor", name, str(minor), "0"]
        output.err("%s: sysfs node '/sys/devices/virtual/block/drbd%d' (already? still?) exists"
                   % (" ".join(new_minor), minor))
        report_refusal(name, refusal, output)
        output.err("Command '%s' terminated with exit code 10"
                   % " ".join([SETUP_TOOL[pool.version]] + new_minor))
        return 1  # drbdadm's deferred commands collapse any failure to 1
    return 0


def adm_adjust(pool, host, name, options, output):
    replica = pool.replica(host, name)
    if not replica["up"]:
        pool.bring_up(host, name)
    elif replica["standalone"]:
        return adm_connect(pool, host, name, set(), output)
    return 0


def adm_status(pool, host, name, options, output):
    return run_setup_step(pool, host, ["status", name], output)


def adm_sh_dev(pool, host, name, options, output):
    output.out(pool.device_path(host, name))
    return 0


def adm_sh_ll_dev(pool, host, name, options, output):
    """The backing disk: here the file that holds this host's replica."""
    output.out(pool.data_path(host, name))
    return 0


ADM_ACTIONS = {
    "primary": adm_primary,
    "secondary": adm_secondary,
    "up": adm_up,
    "down": adm_down,
    "connect": adm_connect,
    "disconnect": adm_disconnect,
    "adjust": adm_adjust,
    "outdate": adm_outdate,
    "resume-io": adm_resume_io,
    "dump": adm_dump,
    "role": adm_role,
    "cstate": adm_cstate,
    "dstate": adm_dstate,
    "get-gi": adm_get_gi,
    "status": adm_status,
    "sh-dev": adm_sh_dev,
    "sh-ll-dev": adm_sh_ll_dev,
}
