"""The iscsi-ha configuration file: reading, validating, rendering the sample.

The file is INI (``/etc/iscsi-ha/iscsi-ha.conf``, or the path in the environment
variable ``ISCSI_HA_CONF``). Validation collects every problem before failing, so
a sysadmin fixes the file in one pass; each problem names its key and the fix.

Settings split in two: pool-wide ones (target name, VIP, LUN identities) must be
the same on both hosts, and :meth:`Config.digest` covers exactly those, so the
controller can tell when the hosts disagree; host-local ones (tool paths,
interfaces, device paths, state directory) may differ.
"""

import errno
import functools
import hashlib
import io
import json
import os
import re
import sys

import six

from iscsi_ha import validate
from iscsi_ha.errors import BadConfig

DEFAULT_PATH = "/etc/iscsi-ha/iscsi-ha.conf"
PATH_VARIABLE = "ISCSI_HA_CONF"
TEMPLATES_VARIABLE = "ISCSI_HA_TEMPLATES"
SAMPLE_TEMPLATE = "iscsi-ha.conf.j2"

TOOLS = ("drbdadm", "drbdsetup", "tgtadm", "ip", "arping")
RESOURCE_PREFIX = "resource "
LOCAL_XAPI = "local"

# section -> key -> default (None: required)
_SCHEMA = {
    "target": {"backend": "tgt", "iqn": None, "tid": "1", "initiators": "ALL",
               "tgt_control_port": "0"},
    "vip": {"address": None, "interface": None, "duplicate_check": "probe", "probe_ms": "50",
            "dad_wait": "1", "arp_announcements": "3"},
    "replication": {"interface": None, "drbd_version": "auto", "hosts": ""},
    "timeouts": {"lock_wait": "10", "command": "20", "fence": "10",
                 "fence_confirmed": "0.2", "peer": "10", "takeover_peer": "0.5",
                 "action": "120"},
    "tools": dict((tool, tool) for tool in TOOLS),
    "host": {"state_dir": "/var/lib/iscsi-ha", "run_dir": "/run/iscsi-ha",
             "log_file": "/var/log/iscsi-ha.log", "inventory": "/etc/xensource-inventory",
             "lvm_conf": "/etc/lvm/lvm.conf", "pool_conf": "/etc/xensource/pool.conf",
             "install_root": "/", "kernel_log": "/var/log/kern.log"},
    "xapi": {"url": LOCAL_XAPI, "username": "root", "password_file": ""},
    "controller": {"interval": "10", "events": "on", "tickle": "on", "overlap": "on",
                   "metrics_file": "", "sr_repair": "on"},
    "alerts": {"email_to": "", "email_from": "", "smtp_server": "", "smtp_port": "0",
               "smtp_security": "none", "smtp_username": "", "smtp_password_file": "",
               "repeat_window": "1800"},
}
_RESOURCE_SCHEMA = {"device": None, "lun": None, "scsi_id": None, "scsi_sn": None,
                    "vendor_id": "ISCSIHA", "product_id": "HA-DISK", "write_cache": "off",
                    # What `iscsi-ha setup` writes into the DRBD resource file.
                    "disk": "", "port": ""}

_IQN = re.compile(r"^iqn\.\d{4}-\d{2}\.[a-z0-9][a-z0-9.-]*(:[^\s]+)?\Z")
_RESOURCE_NAME = re.compile(r"^[A-Za-z0-9_.-]+\Z")  # what both DRBD parsers accept
_USERNAME = re.compile(r"^[\x21-\x7e]+\Z")
_BACKENDS = ("tgt",)
_DRBD_VERSIONS = ("auto", "8.4", "9")
_HOST_PATHS = ("state_dir", "run_dir", "log_file", "inventory", "lvm_conf", "pool_conf",
               "install_root", "kernel_log")
_SMTP_SECURITY = ("none", "starttls", "tls")
# "probe": our own ARP probe over a packet socket, probe_ms long; "arping":
# iputils' arping -D, dad_wait seconds (the prior tool's check).
_DUPLICATE_CHECKS = ("probe", "arping")

_SECTION_LINE = re.compile(r"^\[([^\[\]]*)\]\Z")
_KEY_VALUE = re.compile(r"^([^=:]*)[=:](.*)\Z")
_INLINE_COMMENT = re.compile(r"(^|\s)[#;]")


class Resource(object):
    """One replicated disk exported as one LUN."""

    def __init__(self, name, device, lun, scsi_id, scsi_sn, vendor_id, product_id,
                 write_cache=False, disk="", port=""):
        self.name = name
        self.disk = disk or None  # the backing disk under DRBD, for `iscsi-ha setup`
        self.port = port or None  # its replication TCP port (None: setup derives one)
        self.device = device
        self.lun = lun
        self.scsi_id = scsi_id
        self.scsi_sn = scsi_sn
        self.vendor_id = vendor_id
        self.product_id = product_id
        self.write_cache = write_cache

    def identity(self):
        """What the initiators see of this LUN; must match on both hosts."""
        return {"name": self.name, "lun": self.lun, "scsi_id": self.scsi_id,
                "scsi_sn": self.scsi_sn, "vendor_id": self.vendor_id,
                "product_id": self.product_id, "write_cache": self.write_cache}


class Alerts(object):
    """Where alerts go besides XAPI messages: e-mail over SMTP when ``email_to`` is set."""

    def __init__(self, values):
        self.email_to = values["email_to"]  # a list of addresses; empty: no e-mail
        self.email_from = values["email_from"] or None
        self.smtp_server = values["smtp_server"] or None
        self.smtp_port = values["smtp_port"] or {"tls": 465}.get(values["smtp_security"], 25)
        self.smtp_security = values["smtp_security"]
        self.smtp_username = values["smtp_username"] or None
        self.smtp_password_file = values["smtp_password_file"] or None
        self.repeat_window = values["repeat_window"]


class Config(object):
    """A validated configuration. Build it with :func:`load` or :func:`parse`."""

    def __init__(self, path, values, resources):
        self.path = path
        target, vip, host = values["target"], values["vip"], values["host"]
        self.backend = target["backend"]
        self.iqn = target["iqn"]
        self.tid = target["tid"]
        self.initiators = target["initiators"]
        self.tgt_control_port = target["tgt_control_port"]
        self.vip_address, self.vip_prefix = vip["address"]
        self.vip_interface = vip["interface"]
        self.duplicate_check = vip["duplicate_check"]
        self.probe_ms = vip["probe_ms"]
        self.dad_wait = vip["dad_wait"]
        self.arp_announcements = vip["arp_announcements"]
        self.replication_interface = values["replication"]["interface"]
        self.drbd_version = values["replication"]["drbd_version"]
        # [(uname -n, replication address)] of both hosts, for `iscsi-ha setup`; or [].
        self.replication_hosts = values["replication"]["hosts"]
        self.lock_wait = values["timeouts"]["lock_wait"]
        self.command_timeout = values["timeouts"]["command"]
        self.fence_timeout = values["timeouts"]["fence"]
        self.fence_confirmed_timeout = values["timeouts"]["fence_confirmed"]
        self.peer_timeout = values["timeouts"]["peer"]
        self.takeover_peer_timeout = values["timeouts"]["takeover_peer"]
        self.action_timeout = values["timeouts"]["action"]
        self.tools = dict(values["tools"])
        self.state_dir = host["state_dir"]
        self.run_dir = host["run_dir"]
        self.log_file = host["log_file"]
        self.inventory = host["inventory"]
        self.lvm_conf = host["lvm_conf"]
        self.pool_conf = host["pool_conf"]
        self.install_root = host["install_root"]
        self.kernel_log = host["kernel_log"]
        self.xapi_url = values["xapi"]["url"]
        self.xapi_username = values["xapi"]["username"]
        self.xapi_password_file = values["xapi"]["password_file"] or None
        self.controller_interval = values["controller"]["interval"]
        self.controller_events = values["controller"]["events"]
        self.controller_tickle = values["controller"]["tickle"]
        self.controller_overlap = values["controller"]["overlap"]
        self.metrics_file = values["controller"]["metrics_file"] or None
        self.sr_repair = values["controller"]["sr_repair"]
        self.alerts = Alerts(values["alerts"])
        self.resources = resources

    # run_dir is emptied at boot: what must not outlive the processes that made it.
    @property
    def lock_path(self):
        return os.path.join(self.run_dir, "action.lock")

    @property
    def announcer_pid_path(self):
        return os.path.join(self.run_dir, "arp-announcer.pid")

    def peer_down_marker_path(self, resource_name):
        return os.path.join(self.run_dir, "peer-down." + resource_name)

    # state_dir survives a reboot: the sysadmin's decisions.
    @property
    def manual_mode_path(self):
        return os.path.join(self.state_dir, "manual-mode")

    @property
    def manual_mode_off_path(self):
        """When manual mode last went off here: a pool database restored from an older
        backup may bring back a flag the sysadmin has cleared since."""
        return os.path.join(self.state_dir, "manual-mode-off")

    def host_uuid(self):
        """This dom0's XAPI host UUID (INSTALLATION_UUID in the inventory), or None."""
        try:
            with open(self.inventory) as handle:
                for line in handle:
                    key, _, value = line.strip().partition("=")
                    if key == "INSTALLATION_UUID":
                        return value.strip("'\"")
        except (IOError, OSError):
            pass
        return None

    def pool_wide(self):
        """The settings both hosts must share."""
        return {"backend": self.backend, "iqn": self.iqn, "tid": self.tid,
                "initiators": self.initiators,
                "vip": "%s/%d" % (self.vip_address, self.vip_prefix),
                "resources": [r.identity() for r in self.resources]}

    def digest(self):
        canonical = json.dumps(self.pool_wide(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def config_path():
    return os.environ.get(PATH_VARIABLE) or DEFAULT_PATH


def ensure_directory(path, setting):
    """Create directory ``path`` (the config's ``setting``) unless it is there.

    Two first callers may race to create it; both succeed. A path that cannot
    be a directory is a :class:`BadConfig` naming ``setting``.
    """
    try:
        os.makedirs(path)
    except OSError as exc:
        if not (exc.errno == errno.EEXIST and os.path.isdir(path)):
            raise BadConfig("cannot create the directory %s (%s); make %s a writable "
                            "directory" % (path, exc.strerror or exc, setting))


def load(path=None):
    """Read and validate the config file; raise :class:`BadConfig` listing every problem."""
    path = path or config_path()
    try:
        # UTF-8 whatever the locale: xapi may start plugins with none set.
        with io.open(path, encoding="utf-8") as handle:
            text = handle.read()
    except UnicodeDecodeError as exc:
        raise BadConfig("%s is not UTF-8 text (%s); save it as UTF-8" % (path, exc.reason))
    except (IOError, OSError) as exc:
        raise BadConfig("cannot read config %s: %s; create it from the sample "
                        "(python -m iscsi_ha.config sample) or set %s"
                        % (path, exc.strerror or exc, PATH_VARIABLE))
    return parse(text, path)


def parse(text, path="<config>"):
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    problems = []
    sections = _read_ini(text, path, problems)
    values = _read_sections(sections, problems)
    resources = _read_resources(sections, problems)
    _validate(values, resources, problems)
    if problems:
        raise BadConfig("%s has %d problem%s: %s" % (
            path, len(problems), "" if len(problems) == 1 else "s", "; ".join(problems)),
            details=problems)
    return Config(path, values, [Resource(name, **keys) for name, keys in resources])


def _read_ini(text, path, problems):
    """The file's sections as ``{name: {key: value}}``, in one way on every Python.

    The standard parsers disagree: 2.7's silently keeps the last of two equal
    sections or keys and cuts a value at " ;", 3.x refuses the duplicates and
    keeps the comment in the value, and they read indented lines differently.
    No setting spans lines or needs an inline comment, so those are refused;
    duplicates and inline comments join ``problems``. Lines that are no INI at
    all raise :class:`BadConfig` at once.
    """
    sections, first_seen, broken = {}, {}, []
    current = None
    for number, line in enumerate(re.split(r"\r\n|\r|\n", text), 1):
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        if line[0].isspace():
            broken.append("line %d: '%s' is indented, which would continue the value "
                          "above; no setting spans lines: remove the indentation"
                          % (number, stripped))
            continue
        header = _SECTION_LINE.match(stripped)
        if header:
            current = " ".join(header.group(1).split())
            if current in sections:
                problems.append("[%s]: appears again at line %d (first at line %d); put "
                                "all its keys in one section"
                                % (current, number, first_seen[current]))
            else:
                sections[current] = {}
                first_seen[current] = number
            continue
        pair = _KEY_VALUE.match(stripped)
        if stripped.startswith("[") or not pair or not pair.group(1).strip():
            broken.append("line %d: '%s' is neither [section], key = value nor a comment"
                          % (number, stripped))
            continue
        if current is None:
            broken.append("line %d: '%s' comes before any [section]; move it into its "
                          "section" % (number, stripped))
            continue
        key, value = pair.group(1).strip(), pair.group(2).strip()
        where = "[%s] %s" % (current, key)
        if (current, key) in first_seen:
            problems.append("%s: set again at line %d (first at line %d); keep one"
                            % (where, number, first_seen[(current, key)]))
            continue
        first_seen[(current, key)] = number
        comment = _INLINE_COMMENT.search(value)
        if comment:
            problems.append("%s: '%s' (line %d) holds a comment; put comments on their "
                            "own line" % (where, value, number))
            value = value[:comment.start()].strip()
        sections[current][key] = value
    if broken:
        raise BadConfig("%s is not valid INI: %s" % (path, "; ".join(broken)),
                        details=broken)
    return sections


def _read_sections(sections, problems):
    values = {}
    for section, keys in sorted(_SCHEMA.items()):
        values[section] = _read_keys(sections, section, keys, problems)
    for section in sorted(sections):
        if section not in _SCHEMA and not section.startswith(RESOURCE_PREFIX):
            problems.append("[%s]: unknown section; known sections are %s and "
                            "[resource NAME]" % (section, ", ".join(
                                "[%s]" % s for s in sorted(_SCHEMA))))
    return values


def _read_keys(sections, section, schema, problems):
    present = dict(sections.get(section, {}))
    values = {}
    for key, default in sorted(schema.items()):
        value = present.pop(key, default)
        if not value:
            if default is None:
                problems.append("[%s] %s: missing; set it (see the sample config)"
                                % (section, key))
                continue
            value = default
        values[key] = value
    for key in sorted(present):
        problems.append("[%s] %s: unknown key; valid keys are %s"
                        % (section, key, ", ".join(sorted(schema))))
    return values


def _read_resources(sections, problems):
    """``[(name, {key: value})]`` of the complete ``[resource NAME]`` sections."""
    resources = []
    for section in sorted(sections):
        if not section.startswith(RESOURCE_PREFIX):
            continue
        name = section[len(RESOURCE_PREFIX):]
        if not _RESOURCE_NAME.match(name):
            problems.append("[%s]: bad resource name; use the DRBD resource name "
                            "(letters, digits, _ . -)" % section)
            continue
        values = _read_keys(sections, section, _RESOURCE_SCHEMA, problems)
        if len(values) == len(_RESOURCE_SCHEMA):
            resources.append((name, values))
    if not resources and not any(p.startswith("[resource") for p in problems):
        problems.append("[resource NAME]: no resource configured; add one section per "
                        "DRBD resource")
    return resources


def _validate(values, resources, problems):
    """Check every value that is present and make it canonical, in place.

    Missing ones are reported already; a value that fails stays as it was (the
    problems then stop :class:`Config` from being built).
    """
    places = [("[%s] %s" % (section, key), keys, key)
              for section, keys in sorted(values.items()) for key in sorted(keys)]
    places += [("[resource %s] %s" % (name, key), keys, key)
               for name, keys in resources for key in sorted(keys)]
    for where, keys, key in places:
        _check_ascii(problems, where, keys, key)

    def check(section, key, rule, *arguments):
        _check(problems, "[%s] %s" % (section, key), values[section], key, rule,
               *arguments)

    if values["target"].get("backend") not in _BACKENDS:
        problems.append("[target] backend: '%s' is not supported; use one of %s"
                        % (values["target"].get("backend"), ", ".join(_BACKENDS)))
    check("target", "iqn", _iqn)
    check("target", "tid", validate.whole_number, 1, 65535)
    # tgtd keeps its control port in a signed short.
    check("target", "tgt_control_port", validate.whole_number, 0, 32767)
    check("target", "initiators", validate.initiators)
    check("vip", "address", validate.ipv4_with_prefix)
    check("vip", "interface", validate.interface)
    check("vip", "duplicate_check", _one_of, _DUPLICATE_CHECKS)
    check("vip", "probe_ms", validate.whole_number, 5, 5000)
    check("vip", "dad_wait", validate.whole_number, 1, 30)
    check("vip", "arp_announcements", validate.whole_number, 0, 20)
    check("replication", "interface", validate.interface)
    check("replication", "drbd_version", _one_of, _DRBD_VERSIONS)
    check("replication", "hosts", _replication_hosts)
    for key in sorted(values["timeouts"]):
        check("timeouts", key, validate.seconds)
    _check_shorter_waits(problems, values["timeouts"])
    for key in _HOST_PATHS:
        check("host", key, _absolute_path)
    check("controller", "interval", validate.seconds, 3600)
    check("controller", "events", validate.on_off)
    check("controller", "tickle", validate.on_off)
    check("controller", "overlap", validate.on_off)
    check("controller", "sr_repair", validate.on_off)
    if values["controller"].get("metrics_file"):
        check("controller", "metrics_file", _absolute_path,
              "such as /var/lib/node_exporter/textfile_collector/iscsi-ha.prom")
    _validate_alerts(problems, values["alerts"])
    check("xapi", "url", _xapi_url)
    check("xapi", "username", _username)
    if values["xapi"].get("password_file"):
        check("xapi", "password_file", _absolute_path)
    for name, keys in resources:
        _validate_resource(problems, name, keys)
    for key in ("lun", "scsi_id", "scsi_sn", "device"):
        _check_unique(problems, resources, key)


# Shorter waits for a host already found down, each bounded by the full wait it shortens.
_SHORTER_WAITS = (("fence_confirmed", "fence"), ("takeover_peer", "peer"))


def _check_shorter_waits(problems, timeouts):
    for short, full in _SHORTER_WAITS:
        shorter, longer = timeouts.get(short), timeouts.get(full)
        if isinstance(shorter, float) and isinstance(longer, float) and shorter > longer:
            problems.append("[timeouts] %s: %g s is longer than [timeouts] %s (%g s); it is "
                            "the shorter wait for a host already found down, make it at most "
                            "%g" % (short, shorter, full, longer, longer))


def _check(problems, where, keys, key, rule, *arguments):
    if key not in keys:
        return
    try:
        keys[key] = rule(keys[key], *arguments)
    except ValueError as exc:
        problems.append(u"%s: %s" % (where, six.text_type(exc)))


def _check_ascii(problems, where, keys, key):
    """Values end up in tool command lines and SCSI pages: plain ASCII only.

    A value that is not is dropped, so no other check quotes it again.
    """
    try:
        keys[key].encode("ascii")
    except UnicodeError:
        problems.append("%s: '%s' must be plain ASCII" % (where, keys.pop(key)))


def _validate_alerts(problems, keys):
    def check(key, rule, *arguments):
        _check(problems, "[alerts] %s" % key, keys, key, rule, *arguments)

    check("email_to", validate.email_addresses)
    if keys.get("email_from"):
        check("email_from", validate.email_address)
    if keys.get("smtp_server"):
        check("smtp_server", validate.host_name)
    check("smtp_port", validate.whole_number, 0, 65535)
    check("smtp_security", _one_of, _SMTP_SECURITY)
    if keys.get("smtp_username"):
        check("smtp_username", _username)
    if keys.get("smtp_password_file"):
        check("smtp_password_file", _absolute_path)
    check("repeat_window", validate.seconds, 7 * 86400)
    if keys.get("smtp_username") and not keys.get("smtp_password_file"):
        problems.append("[alerts] smtp_password_file: missing while smtp_username is set; "
                        "name the file holding the mail server's password, or empty "
                        "smtp_username")
    if keys.get("email_to") and not keys.get("smtp_server"):
        problems.append("[alerts] smtp_server: missing while email_to is set; name the mail "
                        "server that takes the alerts, or empty email_to")


def _validate_resource(problems, name, keys):
    where = "[resource %s] " % name
    _check(problems, where + "device", keys, "device", _absolute_path,
           "such as /dev/drbd0")
    _check(problems, where + "lun", keys, "lun", validate.whole_number, 1, 255)
    for key in validate.SCSI_IDENTITY_KEYS:
        _check(problems, where + key, keys, key, functools.partial(validate.scsi_identity, key))
    _check(problems, where + "write_cache", keys, "write_cache", validate.on_off)
    if keys.get("disk"):
        _check(problems, where + "disk", keys, "disk", _absolute_path, "such as /dev/sdb")
    if keys.get("port"):
        _check(problems, where + "port", keys, "port", validate.whole_number, 1, 65535)


def _check_unique(problems, resources, key):
    seen = {}
    for name, keys in resources:
        if key not in keys:
            continue
        # tgt reads scsi_id as hex digits: ABC and abc make the same NAA identifier.
        value = keys[key].lower() if key == "scsi_id" else keys[key]
        if value in seen:
            problems.append("[resource %s] %s: %s is also used by [resource %s]; each "
                            "resource needs its own" % (name, key, keys[key], seen[value]))
        seen.setdefault(value, name)


def _iqn(text):
    if _IQN.match(text):
        return text
    raise ValueError("'%s' is not an iSCSI qualified name; use the form "
                     "iqn.YYYY-MM.reversed.domain:name" % text)


def _one_of(text, choices):
    if text in choices:
        return text
    raise ValueError("'%s'; use one of %s" % (text, ", ".join(choices)))


def _absolute_path(text, example=""):
    if os.path.isabs(text):
        return text
    raise ValueError("'%s' must be an absolute path%s" % (text, example and " " + example))


def _replication_hosts(text):
    """``NAME=ADDRESS NAME=ADDRESS``: each host's name (uname -n) and replication address."""
    fix = ("use both hosts' NAME=ADDRESS (the name uname -n prints, the IPv4 address on the "
           "replication link), such as xcp-a=198.51.100.1 xcp-b=198.51.100.2")
    if not text:
        return []
    pairs = []
    for item in text.replace(",", " ").split():
        name, separator, address = item.partition("=")
        try:
            validate.ipv4(address)
        except ValueError:
            separator = ""
        if not separator or not name:
            raise ValueError("'%s' is not NAME=ADDRESS; %s" % (item, fix))
        pairs.append((name, address))
    if len(pairs) != 2:
        raise ValueError("names %d hosts; %s" % (len(pairs), fix))
    return pairs


def _xapi_url(text):
    """``local`` (xapi's own unix socket on this dom0) or the URL of a pool host."""
    if text == LOCAL_XAPI:
        return text
    try:
        return validate.http_url(text)
    except ValueError as exc:
        raise ValueError(u"%s; or write %s for this host's own xapi"
                         % (six.text_type(exc), LOCAL_XAPI))


def _username(text):
    if _USERNAME.match(text):
        return text
    raise ValueError("'%s' must be a XAPI user name without spaces, such as root" % text)


def templates_dir():
    """Where the Jinja2 templates are: env override, source tree, or installed copy."""
    candidates = [os.environ.get(TEMPLATES_VARIABLE),
                  os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                               "templates"),
                  os.path.join(sys.prefix, "share", "iscsi-ha", "templates")]
    for candidate in candidates:
        if candidate and os.path.exists(os.path.join(candidate, SAMPLE_TEMPLATE)):
            return os.path.normpath(candidate)
    raise BadConfig("cannot find the iscsi-ha templates; set %s to the templates "
                    "directory" % TEMPLATES_VARIABLE)


def render_sample(**overrides):
    """The commented sample config; keyword arguments replace the example values."""
    import jinja2  # only needed here; dom0 code paths do not pay for it
    values = dict(SAMPLE_VALUES)
    values.update(overrides)
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir()), undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True)
    return environment.get_template(SAMPLE_TEMPLATE).render(**values)


SAMPLE_VALUES = {
    "iqn": "iqn.2026-01.com.example:iscsi-ha",
    "tid": 1,
    "tgt_control_port": 0,
    "vip": "192.0.2.100/24",
    "vip_interface": "xenbr0",
    "replication_interface": "bond1",
    "drbd_version": "auto",
    "tools": dict((tool, tool) for tool in TOOLS),
    "initiators": "ALL",
    "state_dir": _SCHEMA["host"]["state_dir"],
    "run_dir": _SCHEMA["host"]["run_dir"],
    "log_file": "/var/log/iscsi-ha.log",
    "inventory": "/etc/xensource-inventory",
    "lvm_conf": "/etc/lvm/lvm.conf",
    "pool_conf": _SCHEMA["host"]["pool_conf"],
    "install_root": _SCHEMA["host"]["install_root"],
    "replication_hosts": "",
    "kernel_log": _SCHEMA["host"]["kernel_log"],
    "controller_interval": 10,
    "controller_events": "on",
    "controller_tickle": "on",
    "controller_overlap": "on",
    "metrics_file": "",
    "sr_repair": "on",
    "duplicate_check": "probe",
    "probe_ms": 50,
    "email_to": "",
    "xapi_url": LOCAL_XAPI,
    "xapi_username": "root",
    "xapi_password_file": "",
    "resources": [{"name": "iscsi1", "device": "/dev/drbd1", "lun": 1,
                   "scsi_id": "1fa0c0de0001", "scsi_sn": "IHA-ISCSI1"}],
}


def main(argv=None):
    """``python -m iscsi_ha.config sample|check [PATH]``"""
    argv = sys.argv[1:] if argv is None else argv
    usage = ("usage: python -m iscsi_ha.config sample        print the commented sample config\n"
             "       python -m iscsi_ha.config check [PATH]  validate a config file "
             "(default: $%s or %s)" % (PATH_VARIABLE, DEFAULT_PATH))
    if argv[:1] == ["sample"] and len(argv) == 1:
        sys.stdout.write(render_sample())
        return 0
    if argv[:1] == ["check"] and len(argv) <= 2:
        try:
            config = load(argv[1] if len(argv) == 2 else None)
        except BadConfig as exc:
            sys.stderr.write("%s\n" % exc.message)
            return 1
        sys.stdout.write("%s: valid, pool-wide digest %s\n" % (config.path, config.digest()))
        return 0
    sys.stderr.write(usage + "\n")
    return 0 if argv[:1] in (["-h"], ["--help"]) else 2


if __name__ == "__main__":
    sys.exit(main())
