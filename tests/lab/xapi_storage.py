"""What a host's storage manager does when the XAPI simulator plugs a PBD (Python 3 only).

Owns: :func:`attach`, the lab's stand-in for SM's ``sr_attach`` of an SR type,
run in the PBD's host's network namespace, failing with the
``SR_BACKEND_FAILURE_<n>`` errors SM gives (xapi-project/sm,
``drivers/XE_SR_ERRORCODES.xml``: ``[code, "", description, ""]``).

``lvmoiscsi`` does what its first steps do on dom0: reach the iSCSI portal
(``device_config`` ``target`` and ``port``; nothing answers: 141, "Unable to
connect to ISCSI service on target") and log in to ``targetIQN`` (refused:
68, "ISCSI login failed"); the login and an INQUIRY are libiscsi's
``iscsi-inq`` of LUN 0, the target's own. Not modelled: finding the LUN by
``SCSIid`` and activating the VG on it (the lab has no LVM on the LUN). Any
other type fails as a backend whose server the lab lacks.
"""

import socket
import subprocess

from .xapi_db import XapiFailure
from .xapi_listeners import in_netns

ISCSI_PORT = 3260
CONNECT_SECONDS = 5.0
LOGIN_SECONDS = 30.0
# SM's codes and descriptions for what the lab can get wrong.
ISCSI_TARGET = ("SR_BACKEND_FAILURE_141", "Unable to connect to ISCSI service on target")
ISCSI_LOGIN = ("SR_BACKEND_FAILURE_68", "ISCSI login failed - check access settings for the "
               "initiator on the storage, if CHAP is used verify CHAP credentials")
SR_UNAVAILABLE = ("SR_BACKEND_FAILURE_47", "The SR is not available")


def backend_failure(code_and_text, detail=""):
    code, text = code_and_text
    return XapiFailure(code, "", text + (" [opterr=%s]" % detail if detail else ""), "")


def attach(sr_type, device_config, netns, ip_tool):
    """Attach the SR on the host in ``netns``; raise its :class:`XapiFailure` if it fails."""
    if sr_type != "lvmoiscsi":
        raise backend_failure(SR_UNAVAILABLE, "the lab has no %s server" % sr_type)
    targets = [t.strip() for t in device_config.get("target", "").split(",") if t.strip()]
    iqn = device_config.get("targetIQN", "")
    try:
        port = int(device_config.get("port") or ISCSI_PORT)
    except ValueError:
        raise XapiFailure("SR_BACKEND_FAILURE_142", "", "Incorrect value for iSCSI port, "
                          "must be a number between 1 and 65535", "") from None
    if not targets or not iqn:
        raise XapiFailure("SR_BACKEND_FAILURE_96", "", "The request is missing or has an "
                          "incorrect target IQN parameter", "")
    for address in targets:  # multipath: one portal that answers is enough to attach
        if _reachable(address, port, netns):
            _login(address, port, iqn, netns, ip_tool)
            return
    raise backend_failure(ISCSI_TARGET, ", ".join("%s:%d" % (a, port) for a in targets))


def _reachable(address, port, netns):
    def make():
        return socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock = in_netns(netns, make) if netns else make()
    try:
        sock.settimeout(CONNECT_SECONDS)
        sock.connect((address, port))
        return True
    except OSError:
        return False
    finally:
        sock.close()


def _login(address, port, iqn, netns, ip_tool):
    argv = ["iscsi-inq", "iscsi://%s:%d/%s/0" % (address, port, iqn)]
    if netns:
        argv = [ip_tool, "netns", "exec", netns] + argv
    try:
        process = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, universal_newlines=True,
                                 timeout=LOGIN_SECONDS)
    except subprocess.TimeoutExpired:
        raise backend_failure(ISCSI_LOGIN, "no login answer from %s:%d" % (address, port)) \
            from None
    if process.returncode != 0:
        said = process.stdout.strip().splitlines()
        raise backend_failure(ISCSI_LOGIN, said[-1] if said else "")
