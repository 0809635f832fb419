"""The plugin's functions as library calls: config, lock and logging around actions.

Each function reads the config afresh (the file is the single source of truth),
and every function that changes the host holds the host lock.
"""

import io
import json
import logging
import os
import time

import six

from iscsi_ha import (__version__, actions, arguments, config as config_module, connections,
                      drbd, install, logs, lvmfilter, poolconf, report, splitbrain)
from iscsi_ha.commands import find_tool
from iscsi_ha.errors import BadArgument, BadConfig, IscsiHaError, StepFailed
from iscsi_ha.lock import host_lock
from iscsi_ha.vip import arping_flavour, interface_exists

LOG = logging.getLogger("iscsi-ha")


def _load():
    config = config_module.load()
    logs.configure(config.log_file)
    return config


def version():
    import platform  # only this fn needs it
    return {"version": __version__, "python": platform.python_version()}


def status(output_format="json"):
    config = _load()
    host = actions.Host(config)
    result = actions.status(config, host, _manual_mode(config))
    splitbrain.annotate(config, host.drbd, result["resources"])
    result["manual_mode_off_at"] = _manual_mode_off_at(config)
    result["pool_role"] = poolconf.read(config.pool_conf)[0]
    result["remembered_initiators"] = connections.remembered(_initiators_path(config))
    result["promote_accepts"] = sorted(arguments.SPECS["promote"])
    return report.status_table(result) if output_format == "table" else result


def promote(force=False, peer_down=False, reason="", tickle=(), vip_released=False,
            await_demote=False):
    if await_demote and (peer_down or vip_released):
        # Before the config and the lock: a bad call leaves nothing behind.
        raise BadArgument("fn=promote argument await_demote=true waits for a live peer's "
                          "demote under way, so it cannot go with %s=true; pass one or the "
                          "other" % ("peer_down" if peer_down else "vip_released"),
                          details=["await_demote"])
    config = _load()
    return _locked_action(config, "promote", reason, lambda host: actions.promote(
        config, host, force=force, peer_down=peer_down, reason=reason, tickle=tickle,
        vip_released=vip_released, await_demote=await_demote))


def demote(reason=""):
    config = _load()
    return _locked_action(config, "demote", reason, lambda host: actions.demote(
        config, host, reason=reason))


def outdate(resource, reason=""):
    """Mark this host's copy of ``resource`` Outdated; the peer's fence-peer handler asks.

    A Primary is left alone and says so: the handler then tells DRBD that the
    peer (this host) is Primary.
    """
    config = _load()
    _known_resource(config, "outdate", resource)
    return _locked_action(config, "outdate", reason, lambda host: actions.outdate(
        config, host, resource, reason=reason))


def resolve_split_brain(resource, role, reason=""):
    """End this host's side of ``resource``'s split brain as the victim (its writes since
    the split are discarded) or the survivor (its data is kept); see splitbrain."""
    config = _load()
    _known_resource(config, "resolve-split-brain", resource)
    result = _locked_action(config, "resolve-split-brain", reason, lambda host: splitbrain.
                            resolve(config, host, resource, role, reason=reason))
    result.update(actions.host_identity(config))
    return result


def _known_resource(config, fn, resource):
    if resource not in [r.name for r in config.resources]:
        raise BadArgument("fn=%s argument resource='%s' is not a resource in %s; use one "
                          "of %s" % (fn, resource, config.path,
                                     ", ".join(r.name for r in config.resources)),
                          details=["resource"])


def remember_initiators(found):
    """Keep the master's initiator connections, for a takeover after its death."""
    config = _load()
    with host_lock(config.lock_path, config.lock_wait):
        path = _initiators_path(config)
        try:
            connections.remember(path, found)
        except (IOError, OSError) as exc:
            raise BadConfig("cannot write %s (%s); make [host] run_dir a writable directory"
                            % (path, exc.strerror or exc))
    return {"remembered": len(set(found))}


def install_files(files, dry_run=False):
    """Install the files ``iscsi-ha setup`` rendered, or a restored config (see install).

    The answer also says what rendering this host's files needs to know: its
    config's text (which holds no secret: it names password files), its DRBD
    generation and the Python the plugin runs on (the controller unit's).
    """
    try:
        config = _load()
    except BadConfig:
        # A rebuilt host has no config yet: the config itself may still be installed.
        if [f["kind"] for f in files] != ["config"]:
            raise
        config = config_module.parse(files[0]["content"], config_module.config_path())
    if dry_run:
        result = install.install(config, files, True)
    else:
        with host_lock(config.lock_path, config.lock_wait):
            result = install.install(config, files, False)
        if result["changed"]:
            LOG.warning("%s", result["summary"])
    try:
        with io.open(config.path, encoding="utf-8") as handle:
            result["config"] = {"path": config.path, "text": handle.read()}
    except (IOError, OSError):
        result["config"] = None  # a rebuilt host's dry run of its restore: none yet
    try:
        result["drbd_version"] = actions.Host(config).drbd.version()
    except IscsiHaError as exc:
        result["drbd_version"], result["drbd_version_error"] = None, exc.message
    return result


def _initiators_path(config):
    # run_dir, since a reboot makes every remembered connection meaningless.
    return os.path.join(config.run_dir, connections.STORE_NAME)


def _locked_action(config, name, reason, run):
    """``run(host)`` under the host lock; a refusal is logged as well as returned."""
    try:
        with host_lock(config.lock_path, config.lock_wait):
            return run(actions.Host(config))
    except IscsiHaError as exc:
        if not isinstance(exc, StepFailed):  # a failed step was logged step by step
            LOG.warning("%s refused: %s (reason: %s)", name, exc.message, reason)
        raise


def set_manual_mode(enabled, reason=""):
    """Manual mode tells the controller to leave this pool's storage to the sysadmin."""
    config = _load()
    with host_lock(config.lock_path, config.lock_wait):
        was = _manual_mode(config)
        if enabled and not was:
            config_module.ensure_directory(config.state_dir, "[host] state_dir")
            with io.open(config.manual_mode_path, "w", encoding="utf-8") as flag:
                flag.write(six.text_type(reason) + u"\n")
            if os.path.exists(config.manual_mode_off_path):
                os.remove(config.manual_mode_off_path)
        elif was and not enabled:
            # Written before the flag goes, so that no moment has neither.
            with io.open(config.manual_mode_off_path + ".new", "w", encoding="utf-8") as off:
                off.write(six.text_type(json.dumps({"at": time.time(), "reason": reason})))
            os.rename(config.manual_mode_off_path + ".new", config.manual_mode_off_path)
            os.remove(config.manual_mode_path)
        if was != enabled:
            LOG.warning("manual mode %s (reason: %s)", "on" if enabled else "off", reason)
    return {"manual_mode": enabled, "changed": was != enabled}


def _manual_mode(config):
    return os.path.exists(config.manual_mode_path)


def _manual_mode_off_at(config):
    """When manual mode last went off on this host (seconds since the epoch), or None."""
    try:
        with io.open(config.manual_mode_off_path, encoding="utf-8") as off:
            return float(json.load(off)["at"])
    except (IOError, OSError, ValueError, KeyError, TypeError):
        return None  # never turned off here, or a record nobody can date: not newer


def check():
    """Validate config and environment without changing anything."""
    config = _load()
    host = actions.Host(config)
    checks = []

    def record(name, ok, detail=""):
        checks.append({"check": name, "ok": bool(ok), "detail": detail})

    for tool in sorted(config.tools):
        path = find_tool(config.tools[tool])
        record("tool %s" % tool, path, path or "%s not found; install it or set [tools] %s"
               % (config.tools[tool], tool))
        if tool == "arping" and path:
            record("arping is iputils'", *arping_flavour(path, config.command_timeout))
    for label, interface in (("vip interface", config.vip_interface),
                             ("replication interface", config.replication_interface)):
        exists = _quietly(lambda: interface_exists(interface, config.tools["ip"],
                                                   config.command_timeout))
        record("%s %s" % (label, interface), exists is True,
               "present" if exists is True else "missing: %s" % (exists or "no such interface"))
    for resource in config.resources:
        known = _quietly(lambda: host.drbd.knows(resource.name))
        record("DRBD resource %s" % resource.name, known is True,
               "known to DRBD" if known is True else
               "not known to DRBD (%s); define it in /etc/drbd.d" % (known or "drbdadm said no"))
        if known is True:
            device = _quietly(lambda: host.drbd.device(resource.name))
            record("DRBD device of %s" % resource.name, device == resource.device,
                   "DRBD says %s, config says %s" % (device, resource.device))
            _check_drbd_settings(host.drbd, resource.name, record)
            _check_lvm_filter(config, host.drbd, resource.name, resource.device, record)
    running = _quietly(host.target.daemon_running)
    record("tgtd", running is True, "answering on control port %d" % config.tgt_control_port
           if running is True else "not answering (%s); start tgtd" % (running or "down"))
    return {"ok": all(c["ok"] for c in checks), "config": config.path,
            "config_digest": config.digest(), "checks": checks}


def _check_drbd_settings(drbd_, name, record):
    try:
        options = drbd_.running_options(name)
        handler = drbd_.fence_peer_handler(name)
    except IscsiHaError as exc:
        record("DRBD %s running settings" % name, False,
               "cannot read them (%s); is the resource up?" % exc.message)
        return
    for check_name, ok, detail in drbd.check_settings(name, options, handler,
                                                      drbd_.version()):
        record(check_name, ok, detail)


def _check_lvm_filter(config, drbd_, name, device, record):
    """LVM must scan neither the DRBD device nor the disk under it (README: the LVM filter)."""
    try:
        with io.open(config.lvm_conf, encoding="utf-8") as handle:
            text = handle.read()
    except (IOError, OSError, UnicodeError) as exc:
        record("LVM filter for %s" % name, False, "cannot read %s (%s); set [host] lvm_conf"
               % (config.lvm_conf, exc))
        return
    devices = [device]
    try:
        devices.append(drbd_.backing_disk(name))
    except IscsiHaError as exc:
        record("backing disk of %s" % name, False, "cannot tell it (%s), so the LVM filter "
               "was checked for %s only" % (exc.message, device))
    try:
        scanned = [path for path in devices if lvmfilter.scanned(text, path)]
    except ValueError as exc:
        record("LVM filter for %s" % name, False, "%s: %s" % (config.lvm_conf, exc))
        return
    record("LVM filter for %s" % name, not scanned,
           "%s rejects %s" % (config.lvm_conf, " and ".join(devices)) if not scanned else
           "LVM would scan %s: add a reject pattern to global_filter in the devices section "
           "of %s (see the README)" % (" and ".join(scanned), config.lvm_conf))


def _quietly(probe):
    """The probe's answer, or the error message (a string) when it failed."""
    try:
        return probe()
    except IscsiHaError as exc:
        return exc.message
