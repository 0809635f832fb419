"""Prometheus metrics: what the pool and a controller look like, as exposition text.

One pure function, :func:`render`, turns what was observed (the hosts of a pass
or of ``iscsi-ha status``, and a controller's counters) into Prometheus' text
format 0.0.4, the format node_exporter's textfile collector reads. The daemon
writes it to ``[controller] metrics_file`` (:func:`write`, atomically) and
``iscsi-ha status --prometheus`` prints it.

Names follow Prometheus' conventions: the ``iscsi_ha_`` prefix, base units in
the name (``_seconds``), ``_total`` on counters, 0/1 gauges for yes/no, and a
state label on a gauge that is 1 for the state a thing is in. Per-host series
carry ``host`` (XAPI's name label) and DRBD series ``resource``. Controller
series carry no host label: each host's file is its own controller's (the
scrape's ``instance`` says which), and ``status`` shows the pool master's.
"""

import os

# A storage role as the plugin says it, and as a metric calls it.
ROLES = (("primary", "serving"), ("secondary", "standby"), ("mixed", "mixed"),
         (None, "unknown"))

_FAMILIES = (
    # name, type, help
    ("iscsi_ha_pool_master", "gauge", "1 for the pool master, as XAPI names it."),
    ("iscsi_ha_host_live", "gauge", "XAPI's host_metrics.live of the host (1 live, 0 not)."),
    ("iscsi_ha_host_status_up", "gauge",
     "1 when the host's iscsi-ha plugin answered fn=status, 0 when it did not."),
    ("iscsi_ha_storage_role", "gauge",
     "1 for the host's storage role: serving (DRBD Primary, target and VIP), standby, "
     "mixed (partly serving) or unknown (no status)."),
    ("iscsi_ha_drbd_primary", "gauge", "1 when the DRBD resource is Primary on the host."),
    ("iscsi_ha_drbd_connected", "gauge",
     "1 when the host's DRBD resource replicates with its peer (a resync counts)."),
    ("iscsi_ha_drbd_disk_up_to_date", "gauge", "1 when the host's copy is UpToDate."),
    ("iscsi_ha_drbd_peer_disk_up_to_date", "gauge",
     "1 when the host sees its peer's copy UpToDate."),
    ("iscsi_ha_drbd_connection_state", "gauge",
     "1 for the DRBD connection (or replication) state the host reports."),
    ("iscsi_ha_drbd_disk_state", "gauge", "1 for the DRBD disk state of the host's copy."),
    ("iscsi_ha_drbd_peer_disk_state", "gauge",
     "1 for the DRBD disk state the host sees its peer's copy in."),
    ("iscsi_ha_drbd_out_of_sync_bytes", "gauge",
     "Bytes the host's DRBD still has to resync to its peer (DRBD 9 only)."),
    ("iscsi_ha_drbd_in_sync_ratio", "gauge",
     "Share of the resource in sync with the peer, 0 to 1 (DRBD 9 only)."),
    ("iscsi_ha_controller_master", "gauge",
     "1 while this controller acts as the pool master's, 0 while it idles."),
    ("iscsi_ha_controller_failovers_total", "counter",
     "Moves of the storage (switchovers and takeovers) this controller completed."),
    ("iscsi_ha_controller_last_failover_duration_seconds", "gauge",
     "Seconds the last completed move took, from the start of its pass to the end of "
     "its promote."),
    ("iscsi_ha_controller_last_failover_timestamp_seconds", "gauge",
     "Unix time the last completed move ended."),
    ("iscsi_ha_controller_reconcile_errors_total", "counter",
     "Passes of this controller in which a plugin call failed."),
    ("iscsi_ha_controller_pbd_plugs_total", "counter",
     "PBDs this controller plugged again after a move (SR repair)."),
    ("iscsi_ha_controller_pbd_plug_failures_total", "counter",
     "PBD.plug calls of the SR repair that failed."),
)
TYPES = dict((name, kind) for name, kind, _ in _FAMILIES)

# Counters a controller keeps (its state file), by metric name.
COUNTERS = (("failovers", "iscsi_ha_controller_failovers_total"),
            ("reconcile_errors", "iscsi_ha_controller_reconcile_errors_total"),
            ("pbd_plugs", "iscsi_ha_controller_pbd_plugs_total"),
            ("pbd_plug_failures", "iscsi_ha_controller_pbd_plug_failures_total"))


def new_counters():
    return dict((key, 0) for key, _ in COUNTERS)


def render(hosts=(), master=None, controller=None):
    """The exposition text.

    ``hosts``: :class:`decide.HostView` objects (name, live, status) of the pool;
    ``master``: the name of the pool master among them; ``controller``: None, or
    ``{"master": bool, "counters": {...}, "last_failover": None or {"seconds",
    "at"}}`` as the daemon keeps them.
    """
    samples = dict((name, []) for name in TYPES)
    for host in hosts:
        _host_samples(samples, host, master)
    if controller is not None:
        _controller_samples(samples, controller)
    lines = []
    for name, kind, text in _FAMILIES:
        if not samples[name]:
            continue
        lines.append("# HELP %s %s" % (name, _escape_help(text)))
        lines.append("# TYPE %s %s" % (name, kind))
        for labels, value in samples[name]:
            lines.append("%s%s %s" % (name, _labels(labels), _value(value)))
    return "".join(line + "\n" for line in lines)


def _host_samples(samples, host, master):
    named = [("host", host.name)]
    samples["iscsi_ha_pool_master"].append((named, host.name == master))
    if isinstance(host.live, bool):
        samples["iscsi_ha_host_live"].append((named, host.live))
    samples["iscsi_ha_host_status_up"].append((named, host.answered))
    role = host.role if host.answered else None
    known = [plugin_role for plugin_role, _ in ROLES]
    for plugin_role, shown in ROLES:
        is_it = role == plugin_role or (plugin_role is None and role not in known)
        samples["iscsi_ha_storage_role"].append((named + [("role", shown)], is_it))
    if not host.answered:
        return
    for resource in host.status.get("resources") or []:
        where = named + [("resource", resource.get("name"))]
        for name, key in (("iscsi_ha_drbd_primary", "is_primary"),
                          ("iscsi_ha_drbd_connected", "connected"),
                          ("iscsi_ha_drbd_disk_up_to_date", "disk_up_to_date")):
            samples[name].append((where, bool(resource.get(key))))
        samples["iscsi_ha_drbd_peer_disk_up_to_date"].append(
            (where, resource.get("peer_disk") == "UpToDate"))
        for name, key in (("iscsi_ha_drbd_connection_state", "connection"),
                          ("iscsi_ha_drbd_disk_state", "disk"),
                          ("iscsi_ha_drbd_peer_disk_state", "peer_disk")):
            if resource.get(key):
                samples[name].append((where + [("state", resource[key])], 1))
        # Where DRBD says them (the plugin gives None otherwise): no made-up zeros.
        if resource.get("out_of_sync_bytes") is not None:
            samples["iscsi_ha_drbd_out_of_sync_bytes"].append(
                (where, int(resource["out_of_sync_bytes"])))
        if resource.get("percent_in_sync") is not None:
            samples["iscsi_ha_drbd_in_sync_ratio"].append(
                (where, float(resource["percent_in_sync"]) / 100.0))


def _controller_samples(samples, controller):
    samples["iscsi_ha_controller_master"].append(([], bool(controller.get("master"))))
    counters = controller.get("counters") or {}
    for key, name in COUNTERS:
        samples[name].append(([], int(counters.get(key) or 0)))
    last = controller.get("last_failover")
    if last:
        samples["iscsi_ha_controller_last_failover_duration_seconds"].append(
            ([], float(last["seconds"])))
        samples["iscsi_ha_controller_last_failover_timestamp_seconds"].append(
            ([], float(last["at"])))


def _labels(pairs):
    if not pairs:
        return ""
    return "{%s}" % ",".join('%s="%s"' % (key, escape_label_value(value))
                             for key, value in pairs)


def escape_label_value(value):
    """A label value as the text format wants it: backslash, double quote and line feed
    escaped; anything else, any character included, as it is."""
    text = value if isinstance(value, type(u"")) else u"%s" % (value,)
    return text.replace(u"\\", u"\\\\").replace(u"\"", u"\\\"").replace(u"\n", u"\\n")


def _escape_help(text):
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _value(value):
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return "%d" % value
    return repr(float(value))


def write(path, text):
    """Replace ``path`` with ``text`` so that a scrape reads the old file or the new one,
    never half of one: a temporary file in the same directory, then a rename."""
    directory = os.path.dirname(path) or "."
    temporary = os.path.join(directory, ".%s.%d.tmp" % (os.path.basename(path), os.getpid()))
    try:
        with open(temporary, "wb") as handle:
            handle.write(text.encode("utf-8"))
        os.rename(temporary, path)
    except (IOError, OSError):
        try:
            os.remove(temporary)
        except OSError:
            pass
        raise
