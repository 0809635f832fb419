"""``drbd_set_role`` for a promote: the kernel's retry loop, with its waits and fencing.

A promote is not one state check: the kernel tries up to four times, and between
tries it pings the peer, waits for a DRBD 9 disk to settle, runs the fence-peer
handler (``fencing``) or, when ``--force`` is given, assumes the local data is
UpToDate and the peer Outdated. The two generations differ (``drbd_nl.c``
``drbd_set_role`` of 8.4.11 and 9.1.17), and so do their answers:

* 8.4 refuses with -1 while it still sees a Primary peer, sleeps ping-timeout
  once and retries; a handler that fails is run again on every remaining try,
  and a Consistent disk fences the same way;
* 9 first pings every connected peer and waits for its PingAck or, from a dead
  peer, ping-timeout until the connection is declared lost (drbd_sender.c
  ``drbd_check_peers``), then waits up to auto-promote-timeout + ping-timeout
  while a disk is Consistent (``wait_up_to_date``, again after a -2 refusal).
  A Secondary whose Primary vanished is UpToDate again by then
  (``replication.settle_after_lost_primary``): only a disk attached while its
  peer was away is Consistent and pays both waits. An UpToDate disk then fences
  once (-7 unless the handler fences the peer), a Consistent one only becomes
  UpToDate once the handler outdates the peer (-2 otherwise); ``--force`` skips
  the handler unless the disk is UpToDate. The handler runs synchronously: the
  promote waits for its exit (drbd_nl.c ``conn_try_outdate_peer``, through the
  usermode helper ``drbd_khelper``), with no bound of its own.

Waits and handlers run without the STATE lock, so every step re-reads the model.
"""

from .errors import (MESSAGES, SS_NO_UP_TO_DATE_DISK, SS_PRIMARY_NOP, SS_TWO_PRIMARIES,
                     DoubleError, Refusal)
from .fencing import apply_verdict, before_handler, prepare, run
from .states import CONSISTENT, DUNKNOWN, INCONSISTENT, OUTDATED, PRIMARY, UP_TO_DATE
from .options import seconds

MAX_TRIES = 4
POLL = 0.05


def promote(pool, host, name, force):
    if pool.replica(host, name)["role"] == PRIMARY:
        return
    if pool.version == "9":
        promote_9(pool, host, name, force)
    else:
        promote_84(pool, host, name, force)


def promote_84(pool, host, name, force):
    pool.request_ping(name)  # notice a dead peer as soon as possible
    forced = assume_disk = assume_peer = False
    tries = 0
    refusal = None
    while tries < MAX_TRIES:
        tries += 1
        refusal = pool.promote_refusal(host, name, assume_disk, assume_peer)
        if refusal is None:
            break
        disk = pool.replica(host, name)["disk"]
        if refusal == SS_NO_UP_TO_DATE_DISK and force and disk in (INCONSISTENT, OUTDATED,
                                                                    CONSISTENT):
            assume_disk = forced = True
            continue
        if refusal == SS_NO_UP_TO_DATE_DISK and disk == CONSISTENT and not assume_peer:
            if try_outdate_peer(pool, host, name):
                assume_disk = True
            continue
        if refusal == SS_PRIMARY_NOP and not assume_peer:
            if not try_outdate_peer(pool, host, name) and force:
                pool.kernel_log(host, name, "Forced into split brain situation!", scope="device")
                assume_peer = True
            continue
        if refusal == SS_TWO_PRIMARIES:
            # Maybe the peer is noticed dead very soon: retry once more after a ping.
            if tries < MAX_TRIES:
                tries = MAX_TRIES - 1
                pool.sleep((int(pool.options["ping-timeout"]) + 1) / 10.0)
                require_up(pool, host, name)
            continue
        refusal = pool.promote_refusal(host, name, assume_disk, assume_peer)
        break
    if refusal is not None:
        refuse(pool, host, name, refusal, scope="device")
    if forced:
        pool.kernel_log(host, name, "Forced to consider local data as UpToDate!", scope="device")
    pool.make_primary(host, name, local_up_to_date=assume_disk, peer_outdated=assume_peer)


def promote_9(pool, host, name, force):
    local = outdate = retried_nop = retried_two = False
    tries = 0
    refusal = None
    restart = True
    while restart:
        restart = False
        pool.notice_dead_peer(name)
        wait_up_to_date(pool, host, name)
        require_up(pool, host, name)
        while tries < MAX_TRIES:
            tries += 1
            refusal = pool.promote_refusal(host, name, local, outdate)
            if refusal is None:
                break
            if refusal == SS_NO_UP_TO_DATE_DISK and force and not local:
                local = True
                continue
            if refusal == SS_NO_UP_TO_DATE_DISK and wait_up_to_date(pool, host, name):
                continue
            if refusal == SS_NO_UP_TO_DATE_DISK and not local:
                fenced = failed = False
                if (pool.peer_disk(host, name) == DUNKNOWN
                        and pool.replica(host, name)["disk"] == CONSISTENT):
                    if try_outdate_peer(pool, host, name):
                        fenced = True
                    else:
                        failed = True
                if fenced and not failed:
                    local = True
                    continue
            if refusal == SS_PRIMARY_NOP and force and local and not outdate:
                outdate = True
                continue
            if refusal == SS_PRIMARY_NOP and not retried_nop:
                retried_nop = True
                if not try_outdate_peer(pool, host, name) and force:
                    pool.kernel_log(host, name, "Forced into split brain situation!")
                    local = True
                continue
            if refusal == SS_TWO_PRIMARIES and not retried_two:
                # The other Primary may die just now: retry once after ping-timeout.
                retried_two = restart = True
                pool.sleep(seconds(pool.options, "ping-timeout"))
            break
    if refusal is not None:
        refuse(pool, host, name, refusal, scope="resource")
    if force and local:
        pool.kernel_log(host, name, "Forced to consider local data as UpToDate!",
                        scope="resource")
    if force and outdate:
        pool.kernel_log(host, name, "Forced to consider peers as Outdated!", scope="resource")
    pool.make_primary(host, name, local_up_to_date=local, peer_outdated=outdate)


def refuse(pool, host, name, refusal, scope):
    pool.kernel_log(host, name, "State change failed: %s" % MESSAGES[refusal], scope=scope)
    raise Refusal(refusal)


def wait_up_to_date(pool, host, name):
    """DRBD 9's wait for a Consistent disk to settle (it waits for the events after a
    lost Primary); whether the local disk became UpToDate meanwhile."""
    timeout = seconds(pool.options, "auto-promote-timeout") + seconds(pool.options,
                                                                      "ping-timeout")
    was_up_to_date = pool.replica(host, name)["disk"] == UP_TO_DATE
    deadline = pool.now() + timeout
    while not settled(pool, host, name) and pool.now() < deadline:
        pool.sleep(min(POLL, deadline - pool.now()))
        require_up(pool, host, name)
    return pool.replica(host, name)["disk"] == UP_TO_DATE and not was_up_to_date


def settled(pool, host, name):
    return pool.replica(host, name)["disk"] != CONSISTENT and not (
        pool.connected(host, name) and pool.peer_disk(host, name) == CONSISTENT)


def try_outdate_peer(pool, host, name):
    """``conn_try_outdate_peer``: run the handler now; whether the peer counts as fenced."""
    decided = before_handler(pool, host, name)
    if decided is not None:
        return decided
    epoch = pool.resource(name)["epoch"]
    cstate = "StandAlone" if pool.replica(host, name)["standalone"] else "Connecting"
    request = prepare(pool, host, name, cstate)
    with pool.unlocked():
        code = run(request, lambda group: pool.handler_started(group, host))
    require_up(pool, host, name)
    return apply_verdict(pool, host, name, code, epoch)


def require_up(pool, host, name):
    """After running unlocked: the host or the resource may be gone."""
    if not pool.alive(host):
        raise DoubleError("%s crashed while drbdsetup primary %s was running" % (host, name))
    if not pool.replica(host, name)["up"]:
        raise DoubleError("%s was taken down while drbdsetup primary %s was running"
                          % (name, name))
