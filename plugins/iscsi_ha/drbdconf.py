"""DRBD resource files (``/etc/drbd.d/<resource>.res``) for iscsi-ha.

Owns the checks on what goes into such a file and its rendering from
``templates/drbd-resource.res.j2`` in DRBD 8.4 or DRBD 9 syntax, with the
settings iscsi-ha's safety depends on (protocol C, resource-level fencing,
split-brain policies that discard no written data, a single Primary).

    python -m iscsi_ha.drbdconf --resource r0 --minor 1 --disk /dev/sdb \\
        --host xcp-a=198.51.100.1 --host xcp-b=198.51.100.2 > /etc/drbd.d/r0.res
"""

import argparse
import re
import sys

import six

from iscsi_ha import validate
from iscsi_ha.config import templates_dir
from iscsi_ha.errors import BadArgument, BadConfig, IscsiHaError

TEMPLATE = "drbd-resource.res.j2"
VERSIONS = ("8.4", "9")
DEFAULT_VERSION = "9"
DEFAULT_PORT = 7789
HIGHEST_MINOR = 1048575  # minor numbers are 20 bits wide
# iscsi-ha's own handler, installed by setup.py: it reaches the peer through XAPI.
FENCE_PEER = "/usr/libexec/iscsi-ha/iscsi-ha-fence-peer"

# drbdadm reads unquoted words of at most 128 of these characters.
_DRBD_WORD = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
# Words drbdadm would read as a number or an address rather than a name.
_NUMBER_OR_ADDRESS = re.compile(r"^([0-9]+[KMGs]?|[0-9]{1,3}(\.[0-9]{1,3}){3})$")
_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
                       r"(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$")
# Inside a double-quoted DRBD string: printable ASCII except the quote and the
# escape character, at most 255 characters.
_QUOTABLE = re.compile(r'^[\x20-\x21\x23-\x5b\x5d-\x7e]{1,255}$')

# Words the DRBD 8.4 or 9 configuration scanner (drbd-utils drbdadm_scanner.fl)
# turns into keywords, so neither a resource nor a host may be named so; "all"
# stands for every resource on drbdadm's command line.
_RESERVED = frozenset("""
    all on ignore-on stacked-on-top-of floating no net yes ask via skip disk host hosts
    port proxy minor inside volume cmd-timeout-short cmd-timeout-medium cmd-timeout-long
    syncer device global common options outside address alternate-link-address startup
    include handlers connection connection-mesh minor-count disable-ip-verification
    dialog-refresh resource meta-disk flexible-meta-disk node-id usage-count _this_host
    _remote_host _peer_node_id _is_standalone template-file path sci ssocks sdp ipv4 ipv6
    size on-io-error fencing max-bio-bvecs disk-timeout read-balancing use-bmbv
    disk-barrier disk-flushes disk-drain md-flushes no-disk-barrier no-disk-flushes
    no-disk-drain no-md-flushes timeout protocol ko-count ping-int max-buffers sndbuf-size
    rcvbuf-size connect-int cram-hmac-alg shared-secret max-epoch-size after-sb-0pri
    after-sb-1pri after-sb-2pri rr-conflict ping-timeout unplug-watermark
    data-integrity-alg on-congestion socket-check-timeout congestion-fill
    congestion-extents allow-two-primaries always-asbp no-tcp-cork tcp-cork
    discard-my-data rate resync-rate after resync-after verify-alg csums-alg
    csums-after-crash-only al-extents al-updates discard-zeroes-if-aligned cpu-mask
    use-rle delay-probe-volume delay-probe-interval c-plan-ahead c-delay-target
    c-fill-target c-max-rate c-min-rate throttle-threshold hold-off-threshold
    on-no-data-accessible wfc-timeout degr-wfc-timeout outdated-wfc-timeout
    stacked-timeouts become-primary-on wait-after-sb pri-on-incon-degr pri-lost-after-sb
    pri-lost initial-split-brain split-brain outdate-peer fence-peer unfence-peer
    local-io-error before-resync-target after-resync-target before-resync-source
    memlimit read-loops compression bwlimit plugin out-of-sync
""".split())


def render(resource, minor, disk, hosts, port=DEFAULT_PORT, version=DEFAULT_VERSION,
           fence_peer=None):
    """The text of ``/etc/drbd.d/<resource>.res`` for both hosts.

    ``hosts`` is a list of exactly two ``(hostname, replication IPv4 address)``
    pairs, hostnames as ``uname -n`` prints them; the first gets node-id 0 on
    DRBD 9. ``version`` is ``"8.4"`` or ``"9"``. ``fence_peer`` is the handler
    command (default: iscsi-ha's handler, :data:`FENCE_PEER`). Raises :class:`BadArgument`
    listing every bad value and its fix; nothing is rendered then.
    """
    problems = []
    resource = _check_name(problems, "resource", resource)
    minor = _check_number(problems, "minor", minor, 0, HIGHEST_MINOR,
                          "the N of /dev/drbdN, unique per resource")
    _check_disk(problems, disk)
    named_hosts = _check_hosts(problems, hosts)
    port = _check_number(problems, "port", port, 1, 65535,
                         "the TCP port of this resource on the replication link")
    version = str(version)
    if version not in VERSIONS:
        problems.append("version: '%s' is not supported; use 8.4 or 9, the generation "
                        "of the hosts' DRBD kernel module (DRBD_KERNEL_VERSION in "
                        "drbdadm --version)" % version)
    fence_peer = FENCE_PEER if fence_peer is None else fence_peer
    _check_fence_peer(problems, fence_peer)
    if problems:
        raise BadArgument("cannot write the DRBD resource file, %d problem%s: %s" % (
            len(problems), "" if len(problems) == 1 else "s", "; ".join(problems)),
            details=problems)
    hosts_in_template = [{"name": name, "address": address, "node_id": node_id}
                         for node_id, (name, address) in enumerate(named_hosts)]
    return _template().render(resource=resource, minor=minor, disk=disk,
                              hosts=hosts_in_template, port=port, version=version,
                              fence_peer=fence_peer)


def _template():
    import jinja2  # only the renderer needs it, not the dom0 plugin's code paths
    directory = templates_dir()
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(directory), undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
    try:
        return environment.get_template(TEMPLATE)
    except jinja2.TemplateNotFound:
        raise BadConfig("%s is missing from the templates directory %s; reinstall "
                        "iscsi-ha or point ISCSI_HA_TEMPLATES at a complete copy"
                        % (TEMPLATE, directory))


def _check_name(problems, field, value, fix="use letters, digits, _ . - (at most 128)"):
    """DRBD reads names as bare words: they must scan as one, and not as a keyword."""
    if not isinstance(value, six.string_types) or not _DRBD_WORD.match(value):
        problems.append("%s: '%s' is not a DRBD name; %s" % (field, value, fix))
    elif value.startswith("-"):
        problems.append("%s: '%s' starts with '-', which drbdadm takes for an option; "
                        "start it with a letter or digit" % (field, value))
    elif _NUMBER_OR_ADDRESS.match(value):
        problems.append("%s: '%s' reads as a number or an address to DRBD; add a "
                        "letter" % (field, value))
    elif value in _RESERVED:
        problems.append("%s: '%s' is a word DRBD's configuration reserves; choose "
                        "another name" % (field, value))
    else:
        return value
    return None


def _check_number(problems, field, value, lowest, highest, meaning):
    try:
        return validate.whole_number(value, lowest, highest)
    except ValueError as exc:
        problems.append("%s: %s (%s)" % (field, six.text_type(exc), meaning))
        return None


def _check_disk(problems, disk):
    if (not isinstance(disk, six.string_types) or not disk.startswith("/")
            or not _QUOTABLE.match(disk) or " " in disk):
        problems.append("disk: '%s' must be the absolute path of the backing block "
                        "device, e.g. /dev/sdb or /dev/disk/by-id/..., without spaces "
                        "or quotes" % (disk,))


def _check_hosts(problems, hosts):
    """``[(hostname, address), (hostname, address)]``, or ``[]`` after a problem."""
    pairs = list(hosts) if isinstance(hosts, (list, tuple)) else None
    if (pairs is None or len(pairs) != 2
            or not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in pairs)):
        problems.append("hosts: %r must be exactly two (hostname, replication address) "
                        "pairs, one per host of the pool" % (hosts,))
        return []
    checked = []
    for index, (name, address) in enumerate(pairs):
        field = "hosts[%d]" % index
        name_ok = _check_name(
            problems, field + " hostname", name,
            "use the host's name as uname -n prints it (letters, digits, - and .)")
        if name_ok is not None and not _HOSTNAME.match(name):
            problems.append("%s hostname: '%s' is not a hostname; use the host's name "
                            "as uname -n prints it" % (field, name))
            name_ok = None
        address_ok = _check_address(problems, field + " address", address)
        checked.append((name_ok, address_ok))
    if all(name is not None and address is not None for name, address in checked):
        if checked[0][0] == checked[1][0]:
            problems.append("hosts: both hosts are named '%s'; give each host's own "
                            "hostname" % checked[0][0])
        elif checked[0][1] == checked[1][1]:
            problems.append("hosts: both hosts have the address %s; give each host its "
                            "own address on the replication link" % checked[0][1])
        else:
            return checked
    return []


def _check_address(problems, field, address):
    try:
        address = validate.ipv4(address)
    except ValueError as exc:
        problems.append("%s: %s" % (field, six.text_type(exc)))
        return None
    first = int(address.split(".")[0])
    if first in (0, 127) or first >= 224:
        problems.append("%s: '%s' is not a unicast address another host can reach; "
                        "use this host's address on the replication link"
                        % (field, address))
        return None
    return address


def _check_fence_peer(problems, command):
    if (not isinstance(command, six.string_types) or not command.startswith("/")
            or not _QUOTABLE.match(command)):
        problems.append("fence_peer: '%s' must be a command starting with an absolute "
                        "path, at most 255 printable characters, without \" or \\"
                        % (command,))


def _host_pair(text):
    name, separator, address = text.partition("=")
    if not separator:
        raise argparse.ArgumentTypeError("'%s': use HOSTNAME=REPLICATION_ADDRESS" % text)
    return name, address


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m iscsi_ha.drbdconf",
        description="Print the DRBD resource file (/etc/drbd.d/RESOURCE.res) for "
                    "iscsi-ha; install the same file on both hosts.")
    parser.add_argument("--resource", required=True, help="DRBD resource name, e.g. r0")
    parser.add_argument("--minor", required=True,
                        help="device minor: the resource is /dev/drbdMINOR")
    parser.add_argument("--disk", required=True,
                        help="backing block device, the same path on both hosts")
    parser.add_argument("--host", required=True, action="append", type=_host_pair,
                        dest="hosts", metavar="HOSTNAME=ADDRESS",
                        help="twice: each host's name (uname -n) and its replication "
                             "IPv4 address")
    parser.add_argument("--port", default=str(DEFAULT_PORT),
                        help="TCP port on the replication link (default %(default)s)")
    parser.add_argument("--drbd-version", default=DEFAULT_VERSION, choices=VERSIONS,
                        help="DRBD generation to write for (default %(default)s)")
    parser.add_argument("--fence-peer", metavar="COMMAND",
                        help="fence-peer handler (default: iscsi-ha's own, %s)"
                        % FENCE_PEER)
    options = parser.parse_args(argv)
    try:
        text = render(options.resource, options.minor, options.disk, options.hosts,
                      port=options.port, version=options.drbd_version,
                      fence_peer=options.fence_peer)
    except IscsiHaError as exc:
        if exc.details:
            sys.stderr.write("cannot write the DRBD resource file:\n%s\n"
                             % "\n".join("  " + problem for problem in exc.details))
        else:
            sys.stderr.write("%s\n" % exc.message)
        return 1
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
