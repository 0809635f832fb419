"""The options a pool's DRBD runs with, and how ``drbdsetup show`` prints them.

Owns the options a pool can be created with (``init_pool(net_options=...)``, CLI
``--net-option KEY=VALUE``), their defaults for an iscsi-ha pool, and the kernel's
own defaults, units and field order that ``drbdsetup show`` uses to print an
option only when it differs from the default (all of them, with ``# default``
comments, under ``--show-defaults``). Field lists and defaults follow drbd-utils
9.22 ``config_flags.c`` with the defaults of the 8.4.11 and 9.1.17 kernels'
``drbd_limits.h``; 8.4 keeps ``fencing`` in the disk section, 9 in the net section.

What the model acts on: ``fencing`` (which handler runs, whether I/O freezes),
``allow-two-primaries``, ``ping-timeout`` (how long a promote waits to notice a
dead peer) and ``auto-promote-timeout`` (DRBD 9: how long a promote of a
Consistent disk waits for it to settle). ``protocol``, ``ping-int`` and
``auto-promote`` are only shown: the double acknowledges every write on both
replicas and does not promote on open.
"""

from .errors import DoubleError
from .states import STANDALONE

# What an iscsi-ha pool runs with unless a test asks for something else.
POOL_DEFAULTS = {"protocol": "C", "fencing": "resource-only", "allow-two-primaries": "no",
                 "ping-int": "10", "ping-timeout": "5", "auto-promote": "no",
                 "auto-promote-timeout": "20"}
CHOICES = {"protocol": ("A", "B", "C"),
           "fencing": ("dont-care", "resource-only", "resource-and-stonith"),
           "allow-two-primaries": ("yes", "no"), "auto-promote": ("yes", "no")}
RANGES = {"ping-int": (1, 120), "ping-timeout": (1, 300), "auto-promote-timeout": (0, 600)}
ONLY_9 = ("auto-promote", "auto-promote-timeout")


def pool_options(version, given):
    """The options of a new pool: POOL_DEFAULTS overridden by ``given`` (validated)."""
    options = {k: v for k, v in POOL_DEFAULTS.items() if version == "9" or k not in ONLY_9}
    for key, value in dict(given or {}).items():
        if key not in options:
            raise DoubleError("unknown DRBD %s option %r (known: %s)"
                              % (version, key, ", ".join(sorted(options))))
        value = str(value)
        if key in CHOICES and value not in CHOICES[key]:
            raise DoubleError("option %s must be one of %s, not %r"
                              % (key, ", ".join(CHOICES[key]), value))
        if key in RANGES:
            low, high = RANGES[key]
            if not value.isdigit() or not low <= int(value) <= high:
                raise DoubleError("option %s must be a whole number from %d to %d, not %r"
                                  % (key, low, high, value))
        options[key] = value
    return options


def seconds(options, key):
    """A time option (``ping-timeout``, ``auto-promote-timeout``: tenths) in seconds."""
    return int(options[key]) / 10.0


# (name, default as printed, unit) in drbdsetup's order; strings are printed quoted.
RESOURCE_OPTIONS_84 = [("cpu-mask", '""', None), ("on-no-data-accessible", "io-error", None)]
RESOURCE_OPTIONS_9 = RESOURCE_OPTIONS_84 + [
    ("auto-promote", "yes", None), ("peer-ack-window", "4096s", "bytes"),
    ("peer-ack-delay", "100", "milliseconds"), ("twopc-timeout", "300", "1/10 seconds"),
    ("twopc-retry-timeout", "1", "1/10 seconds"),
    ("auto-promote-timeout", "20", "1/10 seconds"), ("max-io-depth", "8000", None),
    ("quorum", "off", None), ("on-no-quorum", "suspend-io", None),
    ("quorum-minimum-redundancy", "off", None),
    ("on-suspended-primary-outdated", "disconnect", None)]
_NET_HEAD = [("protocol", "C", None), ("timeout", "60", "1/10 seconds"),
             ("max-epoch-size", "2048", None)]
_NET_MIDDLE = [("connect-int", "10", "seconds"), ("ping-int", "10", "seconds"),
               ("sndbuf-size", "0", "bytes"), ("rcvbuf-size", "0", "bytes"),
               ("ko-count", "7", None), ("allow-two-primaries", "no", None),
               ("cram-hmac-alg", '""', None), ("shared-secret", '""', None),
               ("after-sb-0pri", "disconnect", None), ("after-sb-1pri", "disconnect", None),
               ("after-sb-2pri", "disconnect", None), ("always-asbp", "no", None),
               ("rr-conflict", "disconnect", None), ("ping-timeout", "5", "1/10 seconds"),
               ("data-integrity-alg", '""', None), ("tcp-cork", "yes", None),
               ("on-congestion", "block", None), ("congestion-fill", "0s", "bytes"),
               ("congestion-extents", "1237", None), ("csums-alg", '""', None),
               ("csums-after-crash-only", "no", None), ("verify-alg", '""', None),
               ("use-rle", "yes", None), ("socket-check-timeout", "0", None)]
NET_OPTIONS_84 = (_NET_HEAD + [("max-buffers", "2048", None), ("unplug-watermark", "128", None)]
                  + _NET_MIDDLE)
NET_OPTIONS_9 = ([("transport", '""', None)] + _NET_HEAD + _NET_MIDDLE
                 + [("fencing", "dont-care", None), ("max-buffers", "2048", None),
                    ("allow-remote-read", "yes", None), ("_name", '""', None)])
_DISK_COMMON = [("on-io-error", "detach", None)]
_DISK_FLAGS = [("disk-barrier", "no", None), ("disk-flushes", "yes", None),
               ("disk-drain", "yes", None), ("md-flushes", "yes", None)]
_DISK_TAIL = [("disk-timeout", "0", "1/10 seconds"), ("read-balancing", "prefer-local", None)]
_DISK_WRITE_SAME = [("discard-zeroes-if-aligned", "yes", None),
                    ("disable-write-same", "no", None)]
_RESYNC_CONTROLLER = [("c-plan-ahead", "20", "1/10 seconds"),
                      ("c-delay-target", "10", "1/10 seconds"),
                      ("c-fill-target", "100s", "bytes"),
                      ("c-max-rate", "102400k", "bytes/second"),
                      ("c-min-rate", "250k", "bytes/second")]
DISK_OPTIONS_84 = ([("size", "0s", "bytes"), ("max-bio-bvecs", "0", None)] + _DISK_COMMON
                   + [("fencing", "dont-care", None)] + _DISK_FLAGS
                   + [("resync-rate", "250k", "bytes/second"), ("resync-after", "-1", None),
                      ("al-extents", "1237", None), ("al-updates", "yes", None)]
                   + _DISK_WRITE_SAME + _RESYNC_CONTROLLER + _DISK_TAIL
                   + [("rs-discard-granularity", "0", None)])
DISK_OPTIONS_9 = ([("size", "0s", "bytes")] + _DISK_COMMON + _DISK_FLAGS
                  + [("resync-after", "-1", None), ("al-extents", "1237", None),
                     ("al-updates", "yes", None)] + _DISK_WRITE_SAME + _DISK_TAIL
                  + [("rs-discard-granularity", "0", "bytes")])
PEER_DEVICE_OPTIONS_9 = ([("resync-rate", "250k", "bytes/second")] + _RESYNC_CONTROLLER
                         + [("bitmap", "yes", None)])


def show_section(name, fields, values, show_defaults, depth, open_when_empty=False):
    """Lines of one ``name { ... }`` section as drbdsetup prints it, indented ``depth``.

    8.4's drbdsetup opens a section before it skips the default values, so it
    prints an empty section where 9's prints none (``open_when_empty``).
    """
    lines = []
    for field, default, unit in fields:
        value = values.get(field, default)
        if value == default and not show_defaults:
            continue
        comment = [unit] if unit else []
        if value == default:
            comment.append("default")
        line = "%s%-16s\t%s;" % (indent(depth + 1), field, value)
        lines.append(line + (" # " + ", ".join(comment) if comment else ""))
    if not lines and not open_when_empty:
        return []
    return ["%s%s {" % (indent(depth), name)] + lines + ["%s}" % indent(depth)]


def indent(depth):
    return " " * 4 * depth


def quoted(text):
    return '"%s"' % text


def running_values(pool, host):
    """The options the kernel runs with, as drbdsetup prints them."""
    values = dict(pool.options)
    values["_name"] = quoted(pool.peer_of(host))
    return values


def show_9(pool, host, name, show_defaults):
    values = running_values(pool, host)
    minor = pool.resource(name)["minor"]
    lines = ['resource "%s" {' % name]
    lines += show_section("options", RESOURCE_OPTIONS_9, values, show_defaults, 1)
    lines += [indent(1) + "_this_host {", indent(2) + "node-id\t\t\t%d;" % pool.node_id(host),
              indent(2) + "volume 0 {", indent(3) + "device\t\t\tminor %d;" % minor,
              indent(3) + 'disk\t\t\t"%s";' % pool.disk_path(host, name),
              indent(3) + "meta-disk\t\t\tinternal;"]
    lines += show_section("disk", DISK_OPTIONS_9, values, show_defaults, 3)
    lines += [indent(2) + "}", indent(1) + "}"]
    peer = pool.peer_of(host)
    lines += [indent(1) + "connection {", indent(2) + "_peer_node_id %d;" % pool.node_id(peer),
              indent(2) + "path {",
              indent(3) + "_this_host ipv4 %s:%d;" % (pool.ip_address(host), pool.port(name)),
              indent(3) + "_remote_host ipv4 %s:%d;" % (pool.ip_address(peer), pool.port(name)),
              indent(2) + "}"]
    if pool.connection(host, name) == STANDALONE:
        lines.append(indent(2) + "_is_standalone;")
    lines += show_section("net", NET_OPTIONS_9, values, show_defaults, 2)
    peer_device = show_section("disk", PEER_DEVICE_OPTIONS_9, values, show_defaults, 3)
    if peer_device:
        lines += [indent(2) + "volume 0 {"] + peer_device + [indent(2) + "}"]
    lines += [indent(1) + "}", "}"]
    return "\n".join(lines) + "\n\n"


def show_84(pool, host, name, show_defaults):
    """show_scmd of drbdsetup-84: sections open even when all their values are defaults."""
    values = running_values(pool, host)
    minor = pool.resource(name)["minor"]
    peer = pool.peer_of(host)
    net_configured = pool.connection(host, name) != STANDALONE
    lines = ["resource %s {" % name]
    lines += show_section("options", RESOURCE_OPTIONS_84, values, show_defaults, 1, True)
    if net_configured:
        lines += show_section("net", NET_OPTIONS_84, values, show_defaults, 1, True)
        lines += [indent(1) + "_remote_host {",
                  indent(2) + "address\t\t\tipv4 %s:%d;" % (pool.ip_address(peer),
                                                            pool.port(name)),
                  indent(1) + "}"]
    lines.append(indent(1) + "_this_host {")
    if net_configured:
        lines.append(indent(2) + "address\t\t\tipv4 %s:%d;" % (pool.ip_address(host),
                                                               pool.port(name)))
    lines += [indent(2) + "volume 0 {", indent(3) + "device\t\t\tminor %d;" % minor,
              indent(3) + 'disk\t\t\t"%s";' % pool.disk_path(host, name),
              indent(3) + "meta-disk\t\t\tinternal;"]
    lines += show_section("disk", DISK_OPTIONS_84, values, show_defaults, 3, True)
    lines += [indent(2) + "}", indent(1) + "}", "}"]
    return "\n".join(lines) + "\n"
