"""Each host's DRBD configuration: the resource file a pool stands for, and its dump.

Owns ``STATE/<host>/drbd.conf`` (the file a handler's ``DRBD_CONF`` names):
every resource with the pool's options, this host's own fence-peer handler and
an ``on`` section per host, in the syntax of the pool's generation (8.4 keeps
``fencing`` in the disk section and has no node ids); and what ``drbdadm dump
RES`` prints for it, in drbd-utils 9.22's layout (``drbdadm_dump.c``; drbdadm-84's
is the same without node ids): hosts first, then options, net, disk and handlers,
with drbdadm's column widths and its quoting of values (``esc``).
"""

import os
import re
import shlex

CONF_FILE = "drbd.conf"
# Options iscsi-ha's resource file always states; timers only when not the kernel's default.
ALWAYS_STATED = ("protocol", "fencing", "allow-two-primaries", "auto-promote")
KERNEL_TIMER_DEFAULTS = {"ping-int": "10", "ping-timeout": "5", "auto-promote-timeout": "20"}
SECTIONS = {"8.4": [("net", ("protocol", "allow-two-primaries", "ping-int", "ping-timeout")),
                    ("disk", ("fencing",))],
            "9": [("options", ("auto-promote", "auto-promote-timeout")),
                  ("net", ("protocol", "fencing", "allow-two-primaries", "ping-int",
                           "ping-timeout"))]}
PLAIN = re.compile(r"^[a-zA-Z0-9/._-]{1,80}$")


def config_path(state_dir, host):
    return os.path.join(state_dir, host, CONF_FILE)


def esc(text):
    """A value as drbdadm writes it: bare when plain, else quoted with \\ and \" escaped."""
    if PLAIN.match(text):
        return text
    return '"%s"' % re.sub(r'(["\\])', r"\\\1", text)


def handler_command(pool, host):
    """The fence-peer command line of ``host``'s resource file, or None."""
    argv = pool.state["fence_peer"].get(host)
    return shlex.join(argv) if argv else None


def sections(pool, host):
    """[(section, [(key, value)])] of every resource's config as ``host``'s file has it."""
    options = pool.state["options"]
    stated = []
    for section, keys in SECTIONS[pool.version]:
        pairs = [(k, options[k]) for k in keys if k in options and
                 (k in ALWAYS_STATED or options[k] != KERNEL_TIMER_DEFAULTS.get(k))]
        stated.append((section, pairs))
    command = handler_command(pool, host)
    stated.append(("handlers", [("fence-peer", command)] if command else []))
    return [(section, pairs) for section, pairs in stated if pairs]


def host_lines(pool, name, host, dumped):
    """The ``on HOST`` section; ``dumped`` uses drbdadm dump's columns."""
    minor = pool.resource(name)["minor"]
    address = "ipv4 %s:%d" % (pool.ip_address(host), pool.port(name))
    rows = ([("node-id", pool.node_id(host))] if pool.version == "9" else []) + [
        ("device", "minor %d" % minor), ("disk", esc(pool.disk_path(host, name))),
        ("meta-disk", "internal"), ("address", address)]
    lines = ["    on %s {" % host]
    for key, value in rows:
        if not dumped:
            lines.append("        %s %s;" % (key, value))
        elif key == "node-id":
            lines.append("        node-id %s;" % value)
        elif key == "device":
            lines.append("        device%s%s;" % (" " * 11, value))
        else:
            lines.append("        %-16s %s;" % (key, value.rjust(3)))
    return lines + ["    }"]


def resource_lines(pool, host, name, dumped):
    lines = ["resource %s {" % name]
    body = []
    for section, pairs in sections(pool, host):
        body.append("    %s {" % section)
        for key, value in pairs:
            value = esc(value)
            body.append("        %-16s %s;" % (key, value.rjust(3)) if dumped
                        else "        %s %s;" % (key, value))
        body.append("    }")
    hosts = [line for h in pool.hosts for line in host_lines(pool, name, h, dumped)]
    # The file states the options first; drbdadm dump prints the hosts first.
    lines += hosts + body if dumped else body + hosts
    return lines + ["}"]


def resource_file(pool, host):
    """``(text, {resource: line it starts at})`` of ``host``'s configuration file."""
    lines, starts = [], {}
    for name in pool.resource_names():
        starts[name] = len(lines) + 1
        lines += resource_lines(pool, host, name, dumped=False) + [""]
    return "\n".join(lines), starts


def write_config(pool, host):
    text, _ = resource_file(pool, host)
    path = config_path(pool.state_dir, host)
    with open(path + ".tmp", "w") as config:
        config.write(text)
    os.replace(path + ".tmp", path)


def dump(pool, host, name):
    """What ``drbdadm dump NAME`` prints on ``host``."""
    _, starts = resource_file(pool, host)
    header = ["# resource %s on %s: not ignored, not stacked" % (name, host),
              "# defined at %s:%d" % (config_path(pool.state_dir, host), starts[name])]
    return "\n".join(header + resource_lines(pool, host, name, dumped=True)) + "\n\n"
