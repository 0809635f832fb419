"""The DRBD fence-peer handler: may the peer still write, and what DRBD is to do about it.

DRBD runs the handler named by ``fence-peer`` in the resource file when a
Primary loses its peer, and during a promote while disconnected from a peer it
has not seen outdated; the exit code is DRBD's verdict on the peer. Ours
reaches the peer through XAPI only (never ssh): it asks the peer's plugin to
outdate its copy (``fn=outdate``) and answers

- 4 when the peer's copy is Outdated now, 3 when it is Inconsistent (nothing
  there to promote);
- 6 when the peer is Primary: DRBD then outdates our own copy;
- 7 when the peer could not be reached and the caller of the promote under way
  confirmed that the peer is down (``peer_down=true``, handed over as a
  short-lived marker file, since the kernel, not the plugin, starts us);
- 1 on any doubt, which makes DRBD change nothing.

DRBD's promote waits for our exit, so how long we wait for the peer is part of
a takeover's dark time. Without the confirmation we wait up to ``[timeouts]
fence`` (xapi itself may take that long to give up on a dead host that still
counts as live). With it, the caller has already found the peer gone, and we
only give a peer that is up after all ``[timeouts] fence_confirmed`` to be
heard: an Outdated or Primary answer within it still decides; silence is 7.

Exit code 5 ("peer unreachable, assumed dead") is never given: an unreachable
peer may be alive and writing.
"""

import errno
import json
import logging
import os
import sys
import threading
import time

from iscsi_ha import config as config_module, logs
from iscsi_ha.errors import IscsiHaError

EXIT_DOUBT = 1
EXIT_PEER_INCONSISTENT = 3
EXIT_PEER_OUTDATED = 4
EXIT_PEER_PRIMARY = 6
EXIT_PEER_FENCED = 7

# What the peer said, as ask_peer() sums it up.
OUTDATED, INCONSISTENT, PRIMARY, UNREACHABLE, REFUSED = (
    "outdated", "inconsistent", "primary", "unreachable", "refused")
# XAPI's answers for a host it cannot reach.
_UNREACHABLE_CODES = ("HOST_OFFLINE", "CANNOT_CONTACT_HOST", "HOST_NOT_LIVE")

LOG = logging.getLogger("iscsi-ha")


# -- the caller's confirmation that the peer is down ---------------------------------

def confirm_peer_down(path, resource, seconds):
    """Leave word for the handler that the peer of ``resource`` is down, for ``seconds``."""
    config_module.ensure_directory(os.path.dirname(path), "[host] run_dir")
    record = {"resource": resource, "expires": time.time() + seconds, "pid": os.getpid()}
    temporary = "%s.%d" % (path, os.getpid())
    with open(temporary, "w") as handle:
        json.dump(record, handle)
    os.rename(temporary, path)


def withdraw_peer_down(path):
    try:
        os.remove(path)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise


def peer_down_confirmed(path, resource, now=None):
    """True only for an unexpired confirmation about ``resource``."""
    try:
        with open(path) as handle:
            record = json.load(handle)
        return (record["resource"] == resource
                and float(record["expires"]) > (time.time() if now is None else now))
    except (IOError, OSError, ValueError, KeyError, TypeError):
        return False


# -- the decision --------------------------------------------------------------------

def answer_wait(peer_down, fence_timeout, fence_confirmed):
    """How many seconds to wait for the peer's answer, with or without the promote
    caller's confirmation that it is down."""
    return fence_confirmed if peer_down else fence_timeout


def verdict(answer, detail, peer_down):
    """``(exit code, reason)`` from what the peer answered and the caller's confirmation."""
    if answer == OUTDATED:
        return EXIT_PEER_OUTDATED, "the peer's copy is Outdated (%s)" % detail
    if answer == INCONSISTENT:
        return EXIT_PEER_INCONSISTENT, "the peer's copy is Inconsistent (%s)" % detail
    if answer == PRIMARY:
        return EXIT_PEER_PRIMARY, "the peer is Primary (%s)" % detail
    if answer == UNREACHABLE and peer_down:
        return EXIT_PEER_FENCED, ("the peer did not answer (%s) and the promote's caller "
                                  "confirmed it is down" % detail)
    if answer == UNREACHABLE:
        return EXIT_DOUBT, ("the peer did not answer (%s) and nobody confirmed it is down: "
                            "it may still be writing" % detail)
    return EXIT_DOUBT, "the peer could not be outdated: %s" % detail


def _answer_from_result(result):
    if result.get("role") == "Primary":
        return PRIMARY, "it reports role Primary"
    disk = result.get("disk")
    if disk == "Outdated":
        return OUTDATED, "it reports disk Outdated"
    if disk == "Inconsistent":
        return INCONSISTENT, "it reports disk Inconsistent"
    return REFUSED, "it reports role %s, disk %s" % (result.get("role"), disk)


# -- talking to the peer -------------------------------------------------------------

def ask_peer(config, resource):
    """Ask the other pool host to outdate ``resource``: ``(answer, detail)``."""
    from iscsi_ha import xapi  # the XenAPI module is needed here only
    try:
        with xapi.session(config) as session:
            try:
                peer = xapi.other_host(session, config.host_uuid())
            except xapi.NoSinglePeer as exc:
                return REFUSED, str(exc)
            try:
                value = session.xenapi.host.call_plugin(
                    peer, "iscsi-ha", "outdate",
                    {"resource": resource, "reason": "fence-peer handler"})
            except xapi.Failure as failure:
                details = list(failure.details or [""])
                if details[0] in _UNREACHABLE_CODES:
                    return UNREACHABLE, "XAPI: %s" % " ".join(details)
                return REFUSED, "XAPI: %s" % " ".join(str(d) for d in details)
    except xapi.XapiUnavailable as exc:
        return UNREACHABLE, str(exc)
    try:
        return _answer_from_result(json.loads(value))
    except (ValueError, AttributeError):
        return REFUSED, "the peer's plugin answered %r" % (value,)


def _ask_within(config, resource, seconds):
    """ask_peer() bounded in time: a hung call counts as an unreachable peer."""
    # Imported before the clock starts, so that the XenAPI import (the handler's
    # largest start cost) does not eat the time the peer has to answer.
    from iscsi_ha import xapi  # noqa: F401 pylint: disable=unused-import
    outcome = []

    def run():
        try:
            outcome.append(ask_peer(config, resource))
        except Exception as exc:  # reported as doubt below, with the traceback in the log
            LOG.exception("fence-peer %s: asking the peer failed", resource)
            outcome.append((REFUSED, "%s: %s" % (exc.__class__.__name__, exc)))

    worker = threading.Thread(target=run)
    worker.daemon = True  # a hung XAPI call must not keep the handler alive
    worker.start()
    worker.join(seconds)
    if not outcome:
        return UNREACHABLE, "no answer through XAPI within %g s" % seconds
    return outcome[0]


USAGE = ("usage: iscsi-ha-fence-peer [--config PATH]\n"
         "DRBD's fence-peer handler for iscsi-ha; DRBD runs it with DRBD_RESOURCE set.\n")


def main(argv=None, environ=None):
    argv = sys.argv[1:] if argv is None else argv
    environ = os.environ if environ is None else environ
    path = None
    if argv[:1] in (["-h"], ["--help"]):
        sys.stdout.write(USAGE)
        return 0
    if len(argv) == 2 and argv[0] == "--config":
        path = argv[1]
    elif argv:
        sys.stderr.write(USAGE)
        return EXIT_DOUBT
    resource = environ.get("DRBD_RESOURCE")
    if not resource:
        sys.stderr.write("iscsi-ha-fence-peer: DRBD_RESOURCE is not set; DRBD runs this "
                         "handler, not people\n")
        return EXIT_DOUBT
    try:
        config = config_module.load(path)
    except IscsiHaError as exc:
        sys.stderr.write("iscsi-ha-fence-peer: %s\n" % exc.message)
        return EXIT_DOUBT
    logs.configure(config.log_file)
    confirmed = peer_down_confirmed(config.peer_down_marker_path(resource), resource)
    wait = answer_wait(confirmed, config.fence_timeout, config.fence_confirmed_timeout)
    answer, detail = _ask_within(config, resource, wait)
    code, reason = verdict(answer, detail, confirmed)
    LOG.warning("fence-peer %s: exit %d: %s", resource, code, reason)
    sys.stdout.write("%s\n" % reason)
    return code
