"""The system files ``iscsi-ha setup`` installs on a host (plugin fn ``install-files``).

Owns the one list of what may be installed (:data:`DESTINATIONS`: each kind of
file and where it goes under ``[host] install_root``; the config goes to the
config's own path), the checks on what arrives (known kinds and names, bounded
sizes, text only), and the writing: nothing is written unless every file
passed; a file whose content is already there is left alone; a new content is
written to a temporary file beside the destination and renamed over it, so a
reader sees the old file or the new one, never half; the replaced file is kept
under ``[host] state_dir``/replaced. A dry run writes nothing and returns each
file's unified diff.

The LVM filter is not among the files: lvm.conf has no drop-in directory, and
rewriting dom0's own lvm.conf is the sysadmin's call. Each call reports instead
whether ``[host] lvm_conf`` keeps LVM off the DRBD devices and their disks, and
the ``global_filter`` line that would.
"""

import errno
import io
import json
import os
import re
import sys

import six

from iscsi_ha import config as config_module, lvmfilter
from iscsi_ha.errors import BadArgument, BadConfig

# kind -> path under [host] install_root; "{name}" is the file's name (a DRBD resource).
DESTINATIONS = {
    "drbd-resource": "etc/drbd.d/{name}.res",
    # Debian calls the unit tgt.service; dom0 (CentOS' scsi-target-utils) tgtd.service.
    "tgtd-dropin": "etc/systemd/system/tgtd.service.d/iscsi-ha.conf",
    # dom0's multipath reads every *.conf there (config_dir); XCP-ng keeps
    # /etc/multipath.conf for itself.
    "multipath-blacklist": "etc/multipath/conf.d/iscsi-ha.conf",
    # Where setup.py and the RPM put it, rendered alike: a copy in /etc/systemd/system
    # would shadow the unit of every later upgrade.
    "controller-unit": "usr/lib/systemd/system/iscsi-ha-controller.service",
    "config": None,  # the config file the plugin reads (ISCSI_HA_CONF or the default)
}
NAMED = ("drbd-resource",)
MAX_FILES = 32
MAX_BYTES = 64 * 1024  # per file: the largest (the commented config) is about 10 KiB
REPLACED_DIR = "replaced"
# Text: printable characters, tabs and newlines; no NUL or other control characters.
_CONTROL = re.compile(u"[\x00-\x08\x0b-\x1f\x7f]")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}\Z")


def file_list(value):
    """The ``files`` argument: a JSON list of ``{"kind", "content"[, "name"]}`` objects."""
    fix = ('a JSON list of {"kind": KIND, "content": TEXT} objects ("name": RESOURCE as '
           'well for drbd-resource), kinds: %s' % ", ".join(sorted(DESTINATIONS)))
    try:
        items = json.loads(value)
    except ValueError:
        raise ValueError("not JSON; use %s" % fix)
    if not isinstance(items, list) or len(items) > MAX_FILES:
        raise ValueError("not a list of at most %d files; use %s" % (MAX_FILES, fix))
    files, seen = [], set()
    for index, item in enumerate(items):
        where = "files[%d]" % index
        if not isinstance(item, dict) or set(item) - set(("kind", "name", "content")):
            raise ValueError("%s is not an object with kind, content and name only; use %s"
                             % (where, fix))
        kind, name, content = item.get("kind"), item.get("name"), item.get("content")
        if kind not in DESTINATIONS:
            raise ValueError("%s kind %s is unknown; use one of %s"
                             % (where, json.dumps(kind), ", ".join(sorted(DESTINATIONS))))
        if (kind in NAMED) != (name is not None):
            raise ValueError("%s (%s) %s" % (where, kind, "needs a name" if kind in NAMED
                                             else "takes no name"))
        if name is not None and (not isinstance(name, six.string_types)
                                 or not _NAME.match(name)):
            raise ValueError("%s name %s is not a DRBD resource name (letters, digits, _ . -)"
                             % (where, json.dumps(name)))
        if not isinstance(content, six.string_types):
            raise ValueError("%s content is not text" % where)
        if len(content.encode("utf-8")) > MAX_BYTES:
            raise ValueError("%s content is larger than %d bytes" % (where, MAX_BYTES))
        if _CONTROL.search(content):
            raise ValueError("%s content holds control characters; only text is installed"
                             % where)
        if (kind, name) in seen:
            raise ValueError("%s: %s%s is given twice" % (where, kind, name and " " + name
                                                          or ""))
        seen.add((kind, name))
        files.append({"kind": kind, "name": name, "content": six.text_type(content)})
    return files


def destination(config, kind, name=None):
    """Where a file of ``kind`` goes on this host (a symlinked config: at its target)."""
    if DESTINATIONS[kind] is None:
        return os.path.realpath(config_module.config_path())
    relative = DESTINATIONS[kind].format(name=name)
    return os.path.join(config.install_root, *relative.split("/"))


def check(config, files):
    """Refuse, before anything is written, a file this host's config does not allow."""
    problems = []
    resources = [r.name for r in config.resources]
    for item in files:
        if item["kind"] == "drbd-resource":
            if item["name"] not in resources:
                problems.append("drbd-resource %s is not a [resource NAME] of %s (%s)"
                                % (item["name"], config.path, ", ".join(resources)))
            elif not re.search(r"(?m)^resource %s \{" % re.escape(item["name"]),
                               item["content"]):
                problems.append("drbd-resource %s does not define resource %s"
                                % (item["name"], item["name"]))
        elif item["kind"] == "config":
            try:
                config_module.parse(item["content"], "the config given")
            except BadConfig as exc:
                problems.append(exc.message)
    if problems:
        raise BadArgument("fn=install-files argument files is not valid: %s; nothing was "
                          "written" % "; ".join(problems), details=["files"])


def install(config, files, dry_run):
    """Install ``files`` (checked by :func:`file_list`) per ``config``; one entry each."""
    check(config, files)
    plans = []
    for item in files:
        path = destination(config, item["kind"], item["name"])
        plans.append((item, path, _read(path)))
    results = []
    for item, path, current in plans:
        entry = {"kind": item["kind"], "name": item["name"], "path": path}
        if current == item["content"]:
            entry["outcome"] = "unchanged"
        elif dry_run:
            entry["outcome"] = "would create" if current is None else "would change"
            entry["diff"] = diff(path, current, item["content"])
        else:
            entry["backup"] = _replace(config, path, current, item["content"], results)
            entry["outcome"] = "created" if current is None else "changed"
        results.append(entry)
    changed = [r for r in results if r["outcome"] != "unchanged"]
    return {"action": "install-files", "dry_run": dry_run, "changed": bool(changed)
            and not dry_run, "files": results, "lvm_filter": lvm_filter(config),
            "python": sys.executable,
            "summary": "install-files: %s" % ("; ".join(
                "%s %s" % (r["outcome"], r["path"]) for r in changed) or
                "nothing to do, every file is in place")}


def diff(path, current, new):
    """The unified diff from ``current`` (None: no file) to ``new``."""
    import difflib  # arguments imports this module: every status would pay for it
    return "".join(difflib.unified_diff(
        (current or u"").splitlines(True), new.splitlines(True),
        "/dev/null" if current is None else path, path))


def _read(path):
    try:
        with io.open(path, encoding="utf-8", errors="replace", newline="") as handle:
            return handle.read()
    except (IOError, OSError) as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise BadConfig("cannot read %s (%s); nothing was written" % (path, exc.strerror))


def _replace(config, path, current, content, done):
    """Write ``content`` at ``path`` atomically; the replaced file's backup path or None."""
    import shutil  # as difflib in diff()
    written = ", ".join(r["path"] for r in done if r["outcome"] != "unchanged") or "none"
    try:
        backup = None
        if current is not None:
            backup = os.path.join(config.state_dir, REPLACED_DIR, path.lstrip(os.sep))
            _make_directory(os.path.dirname(backup))
            shutil.copy2(path, backup)
        _make_directory(os.path.dirname(path))
        temporary = os.path.join(os.path.dirname(path),
                                 ".%s.iscsi-ha-new" % os.path.basename(path))
        mode = os.stat(path).st_mode & 0o7777 if current is not None else 0o644
        handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            data = content.encode("utf-8")
            while data:
                data = data[os.write(handle, data):]
            os.fsync(handle)
        finally:
            os.close(handle)
        os.chmod(temporary, mode)
        os.rename(temporary, path)
        return backup
    except (IOError, OSError) as exc:
        raise BadConfig("cannot write %s (%s: %s); files written before it: %s. Make its "
                        "directory writable (or [host] install_root, state_dir) and run "
                        "setup again" % (path, exc.filename or path, exc.strerror or exc,
                                         written))


def _make_directory(path):
    if not os.path.isdir(path):
        os.makedirs(path, 0o755)


def lvm_filter(config):
    """Whether ``[host] lvm_conf`` keeps LVM off each resource's device and disk."""
    devices = []
    for resource in config.resources:
        devices += [resource.device] + ([resource.disk] if resource.disk else [])
    result = {"lvm_conf": config.lvm_conf, "devices": devices}
    try:
        with io.open(config.lvm_conf, encoding="utf-8") as handle:
            text = handle.read()
        result["scanned"] = [path for path in devices if lvmfilter.scanned(text, path)]
    except (IOError, OSError, UnicodeError, ValueError) as exc:
        result.update(ok=False, error="cannot read %s (%s)" % (config.lvm_conf, exc))
        return result
    result["ok"] = not result["scanned"]
    if result["scanned"]:
        result["line"] = lvmfilter.suggest(text, result["scanned"])
    return result
