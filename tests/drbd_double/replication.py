"""The replication link of a pool's resources: connecting, breaking, resyncing.

Owns what happens between the two replicas (``Replication``, a part of
``model.Pool``): the handshake when both hosts can reach each other (resync from
the newer side, or split brain), the moment the link physically breaks (the data
files fork at once) and the later moment the hosts notice it (DRBD's ping
timeout; a promote pings and notices within ping-timeout), a polite disconnect
(which outdates a Secondary whose peer is Primary), and the resync that copies
the whole device at ``resync_rate`` MiB/s while the SyncTarget stays Inconsistent.

Data model: connected replicas share one data file (protocol C); forked ones
have their own; during a resync the target already shares the source's file and
keeps its old one, so that an interrupted resync can leave it the source's data
up to the resync point and its own stale data after it.
"""

import os
import shutil

from .options import seconds
from .states import (BLOCK, CONSISTENT, DATA_DIR, DUNKNOWN, INCONSISTENT, KNOWN_STALE,
                     OUTDATED, PRIMARY, SECONDARY, UP_TO_DATE)


class Replication(object):
    """The link half of ``model.Pool`` (it uses the pool's lookups and logs)."""

    def resync_role(self, host, name):
        """"SyncSource", "SyncTarget" or None while ``name`` is connected."""
        resync = self.resource(name)["resync"]
        if not resync or not self.connected(host, name):
            return None
        return "SyncSource" if resync["source"] == host else "SyncTarget"

    def resync_seconds(self, name):
        return self.resource(name)["size_mib"] / float(self.state["resync_rate"])

    def resync_done(self, name):
        """The fraction of the running resync of ``name`` that is done."""
        resync = self.resource(name)["resync"]
        loss = self.resource(name)["loss"]
        until = loss["at"] if loss else self.now()
        return max(0.0, min(1.0, (until - resync["started"]) / self.resync_seconds(name)))

    def out_of_sync_kib(self, name):
        if not self.resource(name)["resync"]:
            return 0
        total = self.resource(name)["size_mib"] * 1024
        return total - int(total * self.resync_done(name))

    def end_connection(self, name):
        """A host politely leaves the connection (disconnect, down); over a link that is
        already gone the loss is noticed first."""
        resource = self.resource(name)
        if resource["loss"]:
            self.detect_loss(name)
        if resource["connected"]:
            self.drop_connection(name, hard=False)

    def request_ping(self, name):
        """A promote pings the peer: a dead peer is noticed within ping-timeout."""
        loss = self.resource(name)["loss"]
        if loss:
            loss["detect_at"] = min(loss["detect_at"],
                                    self.now() + seconds(self.options, "ping-timeout"))

    def notice_dead_peer(self, name):
        """DRBD 9 promote: ping the peer and wait until it answers or is declared dead."""
        self.request_ping(name)
        while self.resource(name)["loss"]:
            self.sleep(max(0.01, self.resource(name)["loss"]["detect_at"] - self.now()))

    def can_connect(self, name):
        return self.resource(name)["link_up"] and all(
            self.is_up(h, name) and not self.replica(h, name)["standalone"] for h in self.hosts)

    def reconcile(self, name):
        """Connect or break ``name`` so the link matches what both hosts allow."""
        resource = self.resource(name)
        possible = self.can_connect(name)
        if resource["connected"]:
            if not possible and resource["loss"] is None:
                self.start_loss(name)
            elif possible and resource["loss"] is not None:
                self.cancel_loss(name)
        elif possible and resource["loss"] is None:
            self.handshake(name)

    def keeper(self, name):
        """The host that keeps the shared file when the replicas fork: the one Primary
        (its openers hold that file), else a crashed host (so that nothing it left open
        reaches the survivor)."""
        primaries = [h for h in self.hosts if self.replica(h, name)["role"] == PRIMARY
                     and self.alive(h)]
        if len(primaries) == 1:
            return primaries[0]
        dead = [h for h in self.hosts if not self.alive(h)]
        return (dead or self.hosts)[0]

    def start_loss(self, name):
        """The link is gone: no data flows from now on, but nobody has noticed yet."""
        resource = self.resource(name)
        now = self.now()
        resource["loss"] = {"at": now, "detect_at": now + self.state["ping_window"]}
        resync = resource["resync"]
        if resync:
            self.interrupt_resync(name)
        else:
            self.fork_replica(name, self.peer_of(self.keeper(name)))

    def cancel_loss(self, name):
        """The link came back before either side noticed: TCP carried on."""
        resource = self.resource(name)
        resync = resource["resync"]
        gap = self.now() - resource["loss"]["at"]
        resource["loss"] = None
        if resync:
            resync["started"] += gap
            self.share_replica(name, resync["source"], resync["target"], keep_old=False)
        else:
            keeper = self.keeper(name)
            self.share_replica(name, keeper, self.peer_of(keeper), keep_old=False)

    def detect_loss(self, name):
        """The hosts notice the link is gone (DRBD: "PingAck did not arrive in time.")."""
        self.resource(name)["loss"] = None
        for host in self.hosts:
            if self.is_up(host, name):
                self.kernel_log(host, name, "PingAck did not arrive in time.")
        self.drop_connection(name, hard=True, forked=True)

    def drop_connection(self, name, hard, forked=False):
        """The connection of ``name`` ends: a network failure (``hard``) or a polite
        disconnect. The Primary then fences its peer unless it knows the peer is stale."""
        resource = self.resource(name)
        roles = {h: self.replica(h, name)["role"] for h in self.hosts}
        disks = {h: self.replica(h, name)["disk"] for h in self.hosts}
        if not hard and roles[self.hosts[0]] != roles[self.hosts[1]] and (
                self.fencing != "dont-care"):
            # A polite disconnect between a Primary and a Secondary outdates the Secondary.
            secondary = [h for h in self.hosts if roles[h] == SECONDARY][0]
            if disks[secondary] in (UP_TO_DATE, CONSISTENT):
                disks[secondary] = OUTDATED
                self.replica(secondary, name)["disk"] = OUTDATED
        if resource["resync"]:
            if not forked:
                self.interrupt_resync(name)
            self.end_resync(name)
        elif not forked:
            self.fork_replica(name, self.peer_of(self.keeper(name)))
        resource["connected"] = False
        for host in self.hosts:
            peer = self.peer_of(host)
            if not self.is_up(host, name):
                continue
            replica = self.replica(host, name)
            replica["peer_disk"] = disks[peer] if disks[peer] in KNOWN_STALE else DUNKNOWN
            self.kernel_log(host, name, "Connection closed")
            if (hard and self.version == "9" and replica["role"] == SECONDARY
                    and roles[peer] == PRIMARY and replica["disk"] == UP_TO_DATE):
                self.settle_after_lost_primary(host, name)
            if replica["role"] == PRIMARY:
                if replica["gen"] == replica["synced_gen"]:
                    self.start_generation(name, replica)
                if replica["peer_disk"] == DUNKNOWN and self.fencing != "dont-care":
                    if self.fencing == "resource-and-stonith":
                        replica["susp_fen"] = True
                    self.request_fencing(host, name)
        for host in self.hosts:
            if not self.alive(host):
                self.forget_dead(host, name)

    def settle_after_lost_primary(self, host, name):
        """DRBD 9.1.17's Secondary whose Primary vanished (died or link cut): the same
        state change that ends the connection makes its disk Consistent, since the
        Primary may have written what it never got (drbd_state.c sanitize_state,
        ``maybe_crashed_primary``). finish_state_change then has the worker run the
        "lost-peer" cluster-wide state change (drbd_sender.c try_become_up_to_date,
        drbd_state.c twopc_after_lost_peer): with no other node reporting a Primary
        it cannot reach itself (always so with two nodes, whose only peer is gone) it
        commits at once, with no peer to wait for, and the disk is UpToDate again
        (do_twopc_after_lost_peer). It stays Consistent only beside a diskless
        Primary (may_return_to_up_to_date), which an iscsi-ha pool never has. So
        the survivor's promote does not wait for its disk (wait_up_to_date ends once
        nothing is Consistent) and is stopped by fencing alone (SS_PRIMARY_NOP)."""
        self.kernel_log(host, name, "disk( UpToDate -> Consistent )", scope="device")
        self.kernel_log(host, name, "Committing cluster-wide state change (lost-peer)",
                        scope="resource")
        self.kernel_log(host, name, "disk( Consistent -> UpToDate )", scope="device")

    def handshake(self, name):
        first, second = [self.replica(h, name) for h in self.hosts]
        changed = [r["gen"] != r["synced_gen"] for r in (first, second)]
        discarding = [r["discard_my_data"] for r in (first, second)]
        first["discard_my_data"] = second["discard_my_data"] = False
        inconsistent = [h for h in self.hosts if self.replica(h, name)["disk"] == INCONSISTENT]
        # An Inconsistent disk becomes SyncTarget whatever the generations say.
        if all(changed) and discarding.count(True) != 1 and len(inconsistent) != 1:
            self.mark_split_brain(name)
            return
        target = self.sync_target(changed, discarding, inconsistent)
        if all(changed) and target is not None and discarding.count(True) == 1:
            for host in self.hosts:
                # Both kernels say so, each from its own side (drbd_sync_handshake).
                self.kernel_log(host, name, "Split-Brain detected, manually solved. Sync from "
                                "%s node" % ("peer" if host == target else "this"),
                                scope="peer_device")
        resource = self.resource(name)
        resource.update(connected=True, split_brain=False, epoch=resource["epoch"] + 1)
        for host in self.hosts:
            self.replica(host, name).update(peer_disk=DUNKNOWN, susp_fen=False)
        if target is None:
            self.join_without_resync(name)
        else:
            self.start_resync(name, self.peer_of(target), target)

    def sync_target(self, changed, discarding, inconsistent):
        """Which host must receive the other's data, or None when they agree
        (drbd_sync_handshake: disk states first, then the data generations)."""
        if len(inconsistent) == 1:
            return inconsistent[0]
        if any(discarding):
            return self.hosts[discarding.index(True)]
        if any(changed):
            return self.hosts[changed.index(False)]
        return None

    def join_without_resync(self, name):
        keeper = self.keeper(name)
        self.share_replica(name, keeper, self.peer_of(keeper), keep_old=False)
        replicas = [self.replica(h, name) for h in self.hosts]
        generation = self.replica(keeper, name)["gen"]
        # Connected to a peer with good data, Consistent and Outdated disks are UpToDate.
        good = any(r["disk"] in (UP_TO_DATE, CONSISTENT) for r in replicas)
        for replica in replicas:
            replica.update(gen=generation, synced_gen=generation)
            if good and replica["disk"] in (CONSISTENT, OUTDATED):
                replica["disk"] = UP_TO_DATE

    def start_resync(self, name, source, target):
        resource = self.resource(name)
        target_replica = self.replica(target, name)
        source_replica = self.replica(source, name)
        resource["resync"] = {"source": source, "target": target, "started": self.now(),
                              "old_data": target_replica["data"]}
        self.share_replica(name, source, target, keep_old=True)
        target_replica["disk"] = INCONSISTENT
        if source_replica["disk"] == CONSISTENT:
            source_replica["disk"] = UP_TO_DATE
        kib = resource["size_mib"] * 1024
        for host, role in ((source, "SyncSource"), (target, "SyncTarget")):
            self.kernel_log(host, name, "Began resync as %s (will sync %d KB [%d bits set])."
                            % (role, kib, kib // 4), scope="device")

    def finish_resync(self, name):
        resync = self.resource(name)["resync"]
        source = self.replica(resync["source"], name)
        target = self.replica(resync["target"], name)
        self.end_resync(name)
        target["disk"] = source["disk"]
        for replica in (source, target):
            replica.update(gen=source["gen"], synced_gen=source["gen"])
        duration = max(1, int(round(self.resync_seconds(name))))
        rate = self.resource(name)["size_mib"] * 1024 // duration
        for host in (resync["source"], resync["target"]):
            self.kernel_log(host, name, "Resync done (total %d sec; paused 0 sec; %d K/sec)"
                            % (duration, rate), scope="device")

    def end_resync(self, name):
        resource = self.resource(name)
        old = os.path.join(self.state_dir, resource["resync"]["old_data"])
        if os.path.exists(old):
            os.remove(old)
        resource["resync"] = None

    def interrupt_resync(self, name):
        """The target keeps what arrived: the source's data up to the resync point."""
        resync = self.resource(name)["resync"]
        size = self.resource(name)["size_mib"] * 1024 * 1024
        done = int(size * self.resync_done(name)) // BLOCK * BLOCK
        fresh = self.new_data_file(name)
        path = os.path.join(self.state_dir, fresh)
        shutil.copyfile(os.path.join(self.state_dir, resync["old_data"]), path)
        with open(self.data_path(resync["source"], name), "rb") as source, \
                open(path, "r+b") as target:
            target.write(source.read(done))
        self.replica(resync["target"], name)["data"] = fresh

    def mark_split_brain(self, name):
        self.resource(name)["split_brain"] = True
        for host in self.hosts:
            self.replica(host, name)["standalone"] = True
            # drbd_alert(peer_device, ...) on 9, dev_alert on 8.4 (drbd_receiver.c).
            self.kernel_log(host, name, "Split-Brain detected but unresolved, dropping "
                            "connection!", scope="peer_device")

    def start_generation(self, name, replica):
        resource = self.resource(name)
        resource["last_gen"] += 1
        replica["gen"] = resource["last_gen"]

    def new_data_file(self, name):
        resource = self.resource(name)
        resource["files_made"] += 1
        return os.path.join(DATA_DIR, "%s-%d.img" % (name, resource["files_made"]))

    def fork_replica(self, name, host):
        """Give ``host`` its own copy of the replica it shares; it stops getting writes."""
        fresh = self.new_data_file(name)
        shutil.copyfile(self.data_path(host, name), os.path.join(self.state_dir, fresh))
        self.replica(host, name)["data"] = fresh

    def share_replica(self, name, source, target, keep_old):
        """``target``'s replica becomes ``source``'s file again."""
        old = self.data_path(target, name)
        self.replica(target, name)["data"] = self.replica(source, name)["data"]
        if not keep_old and old != self.data_path(target, name) and os.path.exists(old):
            os.remove(old)
