"""The DRBD double's entry points: emulated tools, their wrapper scripts, the command line.

Owns ``run_tool`` (one drbdadm or drbdsetup command on one host, under the STATE
lock, logged), the ``drbdadm``/``drbdsetup`` scripts that make a host's commands
run it, and ``python3 -m tests.drbd_double``: either a tool emulation
(``--as TOOL --state STATE --host HOST ARGS...``) or an admin command (see
``commandline``).
"""

import collections
import os
import shlex
import sys

from . import fencing
from .admin import admin, host_named, locked_pool, log_command
from .drbdadm import run_drbdadm
from .drbdsetup import Output, run_drbdsetup
from .errors import E_DOUBLE, DoubleError

DESCRIPTION = ("The DRBD double: drbdadm/drbdsetup stand-ins for a two-host pool without a "
               "kernel module.")
TOOLS = {"drbdadm": run_drbdadm, "drbdsetup": run_drbdsetup}

ToolResult = collections.namedtuple("ToolResult", "returncode stdout stderr")


def run_tool(state_dir, host, tool, args):
    """Run emulated ``tool`` (drbdadm or drbdsetup) on ``host``; a ToolResult."""
    output = Output()
    with locked_pool(state_dir) as pool:
        try:
            if host not in pool.hosts:
                raise DoubleError("unknown host %s (the pool has %s)"
                                  % (host, ", ".join(pool.hosts)))
            if not pool.alive(host):
                raise DoubleError("%s is crashed; a crashed host runs no commands" % host)
            code = TOOLS[tool](pool, host, list(args), output)
        except DoubleError as error:
            # Raised before anything changed, so the saved model stays as it was.
            output = Output()
            output.err("drbd-double: %s" % error)
            code = E_DOUBLE
        log_command(state_dir, host, [tool] + list(args), code)
    return ToolResult(code, "".join(output.stdout), "".join(output.stderr))


def install_wrappers(state_dir, host, bin_dir):
    """Write ``bin_dir/drbdadm`` and ``bin_dir/drbdsetup`` that act as ``host``."""
    admin(state_dir, ["install-wrappers", host, bin_dir], lambda pool: host_named(pool, host))
    os.makedirs(bin_dir, exist_ok=True)
    # Wrappers run from any cwd (inside `ip netns exec` too), so -m finds this package
    # through PYTHONPATH; PYTHONSAFEPATH (Python 3.11+) keeps a cwd holding another
    # `tests` package from shadowing it.
    environment = ["PYTHONPATH=" + fencing.import_root(), "PYTHONSAFEPATH=1"]
    for tool in TOOLS:
        command = [sys.executable, "-S", "-m", __package__, "--as", tool,
                   "--state", os.path.realpath(state_dir), "--host", host]
        path = os.path.join(bin_dir, tool)
        with open(path, "w") as wrapper:
            wrapper.write("#!/bin/sh\nexport %s\nexec %s \"$@\"\n"
                          % (shell_words(environment), shell_words(command)))
        os.chmod(path, 0o755)


def shell_words(words):
    return " ".join(shlex.quote(word) for word in words)


def split_emulation_args(argv):
    """(tool, state, host, tool_args) from ``--as T --state S --host H ARGS...``."""
    wanted = {"--as": None, "--state": None, "--host": None}
    index = 0
    while index + 1 < len(argv) and argv[index] in wanted:
        wanted[argv[index]] = argv[index + 1]
        index += 2
    if None in wanted.values() or wanted["--as"] not in TOOLS:
        raise DoubleError("usage: python3 -m tests.drbd_double --as drbdadm|drbdsetup "
                          "--state STATE "
                          "--host HOST [ARGS...]")
    return wanted["--as"], wanted["--state"], wanted["--host"], argv[index:]


def main(argv=None, stdout=None, stderr=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    try:
        if argv and argv[0] == "--as":
            tool, state, host, args = split_emulation_args(argv)
            result = run_tool(state, host, tool, args)
            stdout.write(result.stdout)
            stderr.write(result.stderr)
            return result.returncode
        from .commandline import run_admin
        return run_admin(argv, stdout)
    except DoubleError as error:
        stderr.write("drbd-double: %s\n" % error)
        return E_DOUBLE
