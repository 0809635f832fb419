"""Held-open detection: which processes have a simulated DRBD device open, read from /proc.

A Primary may not demote or go down while its device is open (DRBD 9: open for
writing); these helpers find the openers (only those inside the host's network
namespace, when it has one), whether each may write, and what DRBD 9 says about
them; and whether a process the double started is still alive.
"""

import datetime
import os

from .errors import DoubleError


def processes_holding(path, netns):
    """[(pid, writable)] of processes with ``path`` open, limited to network namespace
    ``netns`` when given; ``writable`` when any of its descriptors may write."""
    target = os.path.realpath(path)
    namespace = None
    if netns:
        namespace_file = os.path.join("/var/run/netns", netns)
        if not os.path.exists(namespace_file):
            raise DoubleError("network namespace %s does not exist" % netns)
        namespace = inode_of(namespace_file)
    holders = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        if namespace is not None and inode_of("/proc/%s/ns/net" % pid) != namespace:
            continue
        modes = open_modes(int(pid), target)
        if modes:
            holders.append((int(pid), any(mode != os.O_RDONLY for mode in modes)))
    return holders


def inode_of(path):
    try:
        info = os.stat(path)
    except OSError:  # the process is gone
        return None
    return info.st_dev, info.st_ino


def open_modes(pid, target):
    """The access modes (O_RDONLY, O_WRONLY, O_RDWR) of ``pid``'s descriptors of ``target``."""
    fd_dir = "/proc/%d/fd" % pid
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return []
    modes = []
    for fd in fds:
        try:
            if os.readlink(os.path.join(fd_dir, fd)) != target:
                continue
            with open("/proc/%d/fdinfo/%s" % (pid, fd)) as info:
                flags = [line.split()[1] for line in info if line.startswith("flags:")][0]
        except (OSError, IndexError):
            continue
        modes.append(int(flags, 8) & os.O_ACCMODE)
    return modes


def pid_alive(pid):
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        with open("/proc/%d/stat" % pid) as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def process_name(pid):
    try:
        with open("/proc/%d/comm" % pid) as comm:
            return comm.read().strip()
    except OSError:
        return "?"


def process_start(pid):
    try:
        with open("/proc/%d/stat" % pid) as stat:
            ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/stat") as stat:
            boot = int([line.split()[1] for line in stat if line.startswith("btime")][0])
    except (OSError, IndexError, ValueError):
        return "?"
    started = boot + ticks / float(os.sysconf("SC_CLK_TCK"))
    moment = datetime.datetime.fromtimestamp(started)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + "%03d" % (moment.microsecond // 1000)
