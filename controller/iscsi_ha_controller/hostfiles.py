"""``iscsi-ha setup``: each host's system files, rendered from that host's own config.

Owns what the files say (:func:`render`, pure: a host's config and facts in,
the files out) and the command: ask every host's plugin for its config and
facts (``install-files`` with no files), render, check on every host with a
dry run, and only then install on every host, all through the plugins. With
``--dry-run`` it stops after the diffs. The plugin (``iscsi_ha.install``)
decides where each kind of file goes and writes it.

The files: one DRBD resource file per ``[resource NAME]`` (iscsi-ha's fence-peer
handler), the tgtd drop-in whose stop ends iscsi-ha's target with its sessions,
the multipath blacklist for ``drbd*``, and the controller's systemd unit. The
LVM filter is only checked: each host reports whether ``[host] lvm_conf`` keeps
LVM off the DRBD devices and disks, and the line that would.
"""

import json
import os
import re

from iscsi_ha import commands, config as config_module, drbdconf, report
from iscsi_ha.errors import BadConfig, IscsiHaError

TGT_DROPIN_TEMPLATE = "tgtd-iscsi-ha.conf.j2"
MULTIPATH_TEMPLATE = "multipath-iscsi-ha.conf.j2"
UNIT_TEMPLATE = "iscsi-ha-controller.service.j2"
CONTROLLER = "/usr/sbin/iscsi-ha-controller"  # where setup.py installs the daemon
DEFAULT_TGTADM = "/usr/sbin/tgtadm"
# DRBD's port for a resource without [resource NAME] port: 7788 + its minor.
BASE_PORT = 7788
_MINOR = re.compile(r"drbd([0-9]+)\Z")
LVM_FILTER_NEEDED = "ISCSI_HA_LVM_FILTER_NEEDED"


def render(config, drbd_version, python):
    """``[{"kind", "name", "content"}]`` for a host with ``config`` (a Config), whose
    DRBD generation is ``drbd_version`` ("8.4", "9" or None: unknown) and whose plugin
    runs on ``python``. Raises :class:`BadConfig` listing every field to fix."""
    problems = []
    files = []
    version = config.drbd_version if config.drbd_version != "auto" else drbd_version
    if version is None:
        problems.append("[replication] drbd_version: auto, and the host could not tell its "
                        "DRBD generation; set 8.4 or 9")
    if not python:
        problems.append("the host's plugin did not say which Python it runs on (the "
                        "controller unit's); install this iscsi-ha version on it")
    if not config.replication_hosts:
        problems.append("[replication] hosts: empty; set both hosts' NAME=ADDRESS (uname -n "
                        "and the replication address), such as xcp-a=198.51.100.1 "
                        "xcp-b=198.51.100.2")
    for resource in config.resources:
        where = "[resource %s]" % resource.name
        minor = _MINOR.search(os.path.basename(resource.device))
        if minor is None:
            problems.append("%s device: %s is not a DRBD device /dev/drbdN; name the "
                            "resource's DRBD device" % (where, resource.device))
        if not resource.disk:
            problems.append("%s disk: missing; set the disk under DRBD (the same path on "
                            "both hosts, such as /dev/disk/by-id/...)" % where)
        if minor is None or not resource.disk or version is None or problems:
            continue
        port = resource.port or BASE_PORT + int(minor.group(1))
        if port > 65535:
            problems.append("%s port: %d (7788 + the minor) is no TCP port; set port"
                            % (where, port))
            continue
        try:
            content = drbdconf.render(resource.name, minor.group(1), resource.disk,
                                      config.replication_hosts, port=port, version=version)
        except IscsiHaError as exc:
            problems += ["%s and [replication] hosts: %s" % (where, detail)
                         for detail in exc.details or [exc.message]]
            continue
        files.append({"kind": "drbd-resource", "name": resource.name, "content": content})
    if problems:
        raise BadConfig("%s: cannot render the files, %d problem%s: %s" % (
            config.path, len(problems), "" if len(problems) == 1 else "s",
            "; ".join(problems)), details=problems)
    tgtadm = config.tools["tgtadm"]
    if not os.path.isabs(tgtadm):  # systemd wants absolute paths (dom0's 219 does)
        tgtadm = commands.find_tool(tgtadm) or DEFAULT_TGTADM
    files.append({"kind": "tgtd-dropin", "name": None, "content": _template(
        TGT_DROPIN_TEMPLATE, tgtadm=tgtadm, control_port=config.tgt_control_port,
        tid=config.tid)})
    files.append({"kind": "multipath-blacklist", "name": None,
                  "content": _template(MULTIPATH_TEMPLATE)})
    files.append({"kind": "controller-unit", "name": None, "content": _template(
        UNIT_TEMPLATE, python=python, controller=CONTROLLER)})
    return files


def drbd_identity(config):
    """What must be the same in both hosts' DRBD files for them to connect."""
    return (sorted(config.replication_hosts), sorted(
        (r.name, os.path.basename(r.device), r.port) for r in config.resources))


def _template(name, **values):
    import jinja2  # the CLI's dependency; the plugin's code paths do without it
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(config_module.templates_dir()),
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    try:
        return environment.get_template(name).render(**values)
    except jinja2.TemplateNotFound:
        raise BadConfig("%s is missing from the templates directory %s; reinstall iscsi-ha"
                        % (name, config_module.templates_dir()))


def wire(files):
    """The ``files`` argument of fn=install-files."""
    return json.dumps([dict((k, v) for k, v in f.items() if v is not None) for f in files],
                      sort_keys=True)


def setup(cli, pool, dry_run):
    """Render and install every host's files (see the module docstring); exit status."""
    from iscsi_ha_controller.cli import CliError  # the CLI imports this module
    rendered, replication = [], []
    for view in pool.hosts:
        facts = _call(cli, pool, view, "[]", True, "read its config and facts")
        if not facts.get("config"):
            raise CliError("ISCSI_HA_BAD_CONFIG", "%s has no config to render its files from; "
                           "bring it back with `iscsi-ha config restore %s`"
                           % (view.name, view.name))
        try:
            config = config_module.parse(facts["config"]["text"], "%s:%s" % (
                view.name, facts["config"]["path"]))
            files = render(config, facts.get("drbd_version"), facts.get("python"))
        except BadConfig as exc:
            raise CliError(exc.code, "nothing was installed: %s" % exc.message,
                           {"problems": exc.details}, status=2)
        rendered.append((view, files))
        replication.append((view.name, drbd_identity(config)))
    differing = [name for name, identity in replication[1:] if identity != replication[0][1]]
    if differing:
        raise CliError("ISCSI_HA_BAD_CONFIG", (
            "nothing was installed: the DRBD resources of %s and %s would not connect: make "
            "[replication] hosts and each [resource NAME]'s name, device minor and port the "
            "same in both hosts' configs (`iscsi-ha config restore HOST` copies one)"
            % (replication[0][0], ", ".join(differing))), status=2)
    # Every host checks its files before any host writes one.
    checked = [(view, files, _call(cli, pool, view, wire(files), True, "check its files"))
               for view, files in rendered]
    hosts = []
    for view, files, preview in checked:
        result = preview
        if not dry_run and preview.get("files") and any(
                f["outcome"] != "unchanged" for f in preview["files"]):
            result = _call(cli, pool, view, wire(files), False, "install its files",
                           done=hosts)
        hosts.append({"host": view.name, "files": result["files"],
                      "lvm_filter": result.get("lvm_filter")})
    value = {"dry_run": dry_run, "hosts": hosts,
             "changed": any(f["outcome"] in ("created", "changed")
                            for h in hosts for f in h["files"])}
    missing = [h for h in hosts if not (h["lvm_filter"] or {}).get("ok")]
    if not (missing and cli.json):  # with --json, the error below carries the result
        cli.result(value, text(value))
    if missing:
        raise CliError(LVM_FILTER_NEEDED, "%s; iscsi-ha does not edit lvm.conf: edit it "
                       "there, then `iscsi-ha check` verifies it" % "; ".join(
                           lvm_advice(h["host"], h["lvm_filter"]) for h in missing),
                       {"setup": value})
    return 0


def _call(cli, pool, view, files, dry_run, what, done=()):
    from iscsi_ha_controller.cli import CliError
    result, error = cli.client_call(pool, view, "install-files", {
        "files": files, "dry_run": "true" if dry_run else "false"},
        cli.config.action_timeout)
    if error is None:
        return result
    before = ("; installed before it: %s" % ", ".join(
        "%s (%s)" % (h["host"], ", ".join(f["path"] for f in h["files"]
                                          if f["outcome"] != "unchanged") or "nothing")
        for h in done)) if done else "; nothing was installed"
    hint = (" (a plugin without fn=install-files: install this iscsi-ha version on every "
            "host)" if error[0] == "UNKNOWN_XENAPI_PLUGIN_FUNCTION" else "")
    raise CliError(error[0], "%s could not %s: %s%s%s" % (
        view.name, what, " ".join(error[1:2]) or error[0], hint, before))


def lvm_advice(host, lvm):
    lvm = lvm or {}
    if lvm.get("error"):
        return "%s: %s; set [host] lvm_conf" % (host, lvm["error"])
    if lvm.get("line"):
        return ("%s: LVM would scan %s: in the devices section of %s set %s"
                % (host, " and ".join(lvm.get("scanned", [])), lvm.get("lvm_conf"),
                   lvm["line"]))
    return ("%s: LVM would scan %s: add reject patterns for them to global_filter in %s"
            % (host, " and ".join(lvm.get("scanned", [])), lvm.get("lvm_conf")))


def text(value):
    """The human form: a line per host and file, then the diffs of a dry run."""
    rows = [[h["host"], f["kind"] + (" " + f["name"] if f.get("name") else ""), f["path"],
             f["outcome"]] for h in value["hosts"] for f in h["files"]]
    rows += [[h["host"], "LVM filter", (h["lvm_filter"] or {}).get("lvm_conf"),
              "ok" if (h["lvm_filter"] or {}).get("ok") else "EDIT NEEDED"]
             for h in value["hosts"]]
    out = report.table(["host", "file", "path", "outcome"], rows)
    for host in value["hosts"]:
        for entry in host["files"]:
            if entry.get("diff"):
                out += "\n--- %s: %s\n%s" % (host["host"], entry["path"], entry["diff"])
    if value["dry_run"]:
        out += "\ndry run: nothing was changed; `iscsi-ha setup` installs these\n"
    elif not value["changed"]:
        out += "\nnothing changed: every file is in place on every host\n"
    else:
        # What reads the files is the sysadmin's to restart: setup never stops a service.
        out += ("\nnext, on each host that changed: systemctl daemon-reload; multipathd "
                "reconfigure; for a changed DRBD file, drbdadm adjust RESOURCE\n")
    return out
