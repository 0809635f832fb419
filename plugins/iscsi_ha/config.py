"""The iscsi-ha configuration file: reading, validating, rendering the sample.

The file is INI (``/etc/iscsi-ha/iscsi-ha.conf``, or the path in the environment
variable ``ISCSI_HA_CONF``). Validation collects every problem before failing, so
a sysadmin fixes the file in one pass; each problem names its key and the fix.

Settings split in two: pool-wide ones (target name, VIP, LUN identities) must be
the same on both hosts, and :meth:`Config.digest` covers exactly those, so the
controller can tell when the hosts disagree; host-local ones (tool paths,
interfaces, device paths, state directory) may differ.
"""

import hashlib
import io
import json
import os
import re
import socket
import sys

import six
from six.moves import configparser

from iscsi_ha.errors import BadConfig

DEFAULT_PATH = "/etc/iscsi-ha/iscsi-ha.conf"
PATH_VARIABLE = "ISCSI_HA_CONF"
TEMPLATES_VARIABLE = "ISCSI_HA_TEMPLATES"
SAMPLE_TEMPLATE = "iscsi-ha.conf.j2"

TOOLS = ("drbdadm", "drbdsetup", "tgtadm", "ip", "arping")
RESOURCE_PREFIX = "resource "

# section -> key -> default (None: required)
_SCHEMA = {
    "target": {"backend": "tgt", "iqn": None, "tid": "1", "initiators": "ALL",
               "tgt_control_port": "0"},
    "vip": {"address": None, "interface": None, "dad_wait": "1", "arp_announcements": "3"},
    "replication": {"interface": None, "drbd_version": "auto"},
    "timeouts": {"lock_wait": "10", "command": "20"},
    "tools": dict((tool, tool) for tool in TOOLS),
    "host": {"state_dir": "/var/run/iscsi-ha", "log_file": "/var/log/iscsi-ha.log",
             "inventory": "/etc/xensource-inventory"},
}
_RESOURCE_SCHEMA = {"device": None, "lun": None, "scsi_id": None, "scsi_sn": None,
                    "vendor_id": "ISCSIHA", "product_id": "HA-DISK"}

_IQN = re.compile(r"^iqn\.\d{4}-\d{2}\.[a-z0-9][a-z0-9.-]*(:[^\s]+)?$")
_RESOURCE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")  # what both DRBD parsers accept
_INTERFACE = re.compile(r"^[^\s/:]{1,15}$")
_SCSI_TEXT = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII without spaces
_SCSI_ID = re.compile(r"^[0-9a-fA-F]{1,31}$")
_BACKENDS = ("tgt",)
_DRBD_VERSIONS = ("auto", "8.4", "9")


class Resource(object):
    """One replicated disk exported as one LUN."""

    def __init__(self, name, device, lun, scsi_id, scsi_sn, vendor_id, product_id):
        self.name = name
        self.device = device
        self.lun = lun
        self.scsi_id = scsi_id
        self.scsi_sn = scsi_sn
        self.vendor_id = vendor_id
        self.product_id = product_id

    def identity(self):
        """What the initiators see of this LUN; must match on both hosts."""
        return {"name": self.name, "lun": self.lun, "scsi_id": self.scsi_id,
                "scsi_sn": self.scsi_sn, "vendor_id": self.vendor_id,
                "product_id": self.product_id}


class Config(object):
    """A validated configuration. Build it with :func:`load` or :func:`parse`."""

    def __init__(self, path, values, resources):
        self.path = path
        self.backend = values["target"]["backend"]
        self.iqn = values["target"]["iqn"]
        self.tid = int(values["target"]["tid"])
        self.initiators = values["target"]["initiators"].split()
        self.tgt_control_port = int(values["target"]["tgt_control_port"])
        self.vip_address, prefix = values["vip"]["address"].split("/")
        self.vip_prefix = int(prefix)
        self.vip_interface = values["vip"]["interface"]
        self.dad_wait = int(values["vip"]["dad_wait"])
        self.arp_announcements = int(values["vip"]["arp_announcements"])
        self.replication_interface = values["replication"]["interface"]
        self.drbd_version = values["replication"]["drbd_version"]
        self.lock_wait = float(values["timeouts"]["lock_wait"])
        self.command_timeout = float(values["timeouts"]["command"])
        self.tools = dict(values["tools"])
        self.state_dir = values["host"]["state_dir"]
        self.log_file = values["host"]["log_file"]
        self.inventory = values["host"]["inventory"]
        self.resources = resources

    @property
    def lock_path(self):
        return os.path.join(self.state_dir, "action.lock")

    @property
    def announcer_pid_path(self):
        return os.path.join(self.state_dir, "arp-announcer.pid")

    @property
    def manual_mode_path(self):
        return os.path.join(self.state_dir, "manual-mode")

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
    parser = configparser.RawConfigParser()
    parser.optionxform = str  # keys are case-sensitive, as documented
    try:
        _read_string(parser, text, path)
    except configparser.Error as exc:
        raise BadConfig("%s is not valid INI: %s" % (path, _one_line(exc)))
    problems = []
    values = _read_sections(parser, problems)
    resources = _read_resources(parser, problems)
    _validate(values, resources, problems)
    if problems:
        raise BadConfig("%s has %d problem%s: %s" % (
            path, len(problems), "" if len(problems) == 1 else "s", "; ".join(problems)),
            details=problems)
    return Config(path, values, resources)


def _read_string(parser, text, path):
    if hasattr(parser, "read_string"):
        parser.read_string(text, source=path)
    else:  # Python 2.7
        parser.readfp(io.StringIO(text if isinstance(text, six.text_type) else
                                  text.decode("utf-8")), path)


def _one_line(exc):
    return " ".join(str(exc).split())


def _read_sections(parser, problems):
    values = {}
    for section, keys in sorted(_SCHEMA.items()):
        values[section] = _read_keys(parser, section, keys, problems)
    for section in parser.sections():
        if section not in _SCHEMA and not section.startswith(RESOURCE_PREFIX):
            problems.append("[%s]: unknown section; known sections are %s and "
                            "[resource NAME]" % (section, ", ".join(
                                "[%s]" % s for s in sorted(_SCHEMA))))
    return values


def _read_keys(parser, section, schema, problems):
    present = dict(parser.items(section)) if parser.has_section(section) else {}
    values = {}
    for key, default in sorted(schema.items()):
        value = present.pop(key, default)
        if value is None or not value.strip():
            if default is None:
                problems.append("[%s] %s: missing; set it (see the sample config)"
                                % (section, key))
                continue
            value = default
        values[key] = value.strip()
    for key in sorted(present):
        problems.append("[%s] %s: unknown key; valid keys are %s"
                        % (section, key, ", ".join(sorted(schema))))
    return values


def _read_resources(parser, problems):
    resources = []
    for section in parser.sections():
        if not section.startswith(RESOURCE_PREFIX):
            continue
        name = section[len(RESOURCE_PREFIX):].strip()
        if not _RESOURCE_NAME.match(name):
            problems.append("[%s]: bad resource name; use the DRBD resource name "
                            "(letters, digits, _ . -)" % section)
            continue
        values = _read_keys(parser, section, _RESOURCE_SCHEMA, problems)
        if len(values) != len(_RESOURCE_SCHEMA):
            continue
        resources.append(Resource(name, values["device"], values["lun"], values["scsi_id"],
                                  values["scsi_sn"], values["vendor_id"],
                                  values["product_id"]))
    if not resources and not any(p.startswith("[resource") for p in problems):
        problems.append("[resource NAME]: no resource configured; add one section per "
                        "DRBD resource")
    return resources


def _validate(values, resources, problems):
    """Check every value that is present (missing ones are reported already)."""
    _check_ascii(values, resources, problems)
    target, vip = values["target"], values["vip"]
    if target["backend"] not in _BACKENDS:
        problems.append("[target] backend: '%s' is not supported; use one of %s"
                        % (target["backend"], ", ".join(_BACKENDS)))
    if "iqn" in target and not _IQN.match(target["iqn"]):
        problems.append("[target] iqn: '%s' is not an iSCSI qualified name; use the form "
                        "iqn.YYYY-MM.reversed.domain:name" % target["iqn"])
    _check_int(problems, "[target] tid", target["tid"], 1, 65535)
    # tgtd keeps its control port in a signed short.
    _check_int(problems, "[target] tgt_control_port", target["tgt_control_port"], 0, 32767)
    if "address" in vip:
        _check_vip(problems, vip["address"])
    for section in ("vip", "replication"):
        interface = values[section].get("interface")
        if interface is not None and not _INTERFACE.match(interface):
            problems.append("[%s] interface: '%s' is not a network interface name (at most "
                            "15 characters, no spaces)" % (section, interface))
    _check_int(problems, "[vip] dad_wait", vip["dad_wait"], 1, 30)
    _check_int(problems, "[vip] arp_announcements", vip["arp_announcements"], 0, 20)
    if values["replication"]["drbd_version"] not in _DRBD_VERSIONS:
        problems.append("[replication] drbd_version: '%s'; use one of %s"
                        % (values["replication"]["drbd_version"], ", ".join(_DRBD_VERSIONS)))
    for key in sorted(values["timeouts"]):
        _check_number(problems, "[timeouts] %s" % key, values["timeouts"][key])
    for key in ("state_dir", "log_file", "inventory"):
        if not os.path.isabs(values["host"][key]):
            problems.append("[host] %s: '%s' must be an absolute path"
                            % (key, values["host"][key]))
    for resource in resources:
        _validate_resource(problems, resource)
    for attribute in ("lun", "scsi_id", "scsi_sn", "device"):
        _check_unique(problems, resources, attribute)



def _check_ascii(values, resources, problems):
    """Values end up in tool command lines and SCSI pages: plain ASCII only."""
    places = [("[%s] %s" % (section, key), value)
              for section, keys in sorted(values.items()) for key, value in sorted(keys.items())]
    places += [("[resource %s] %s" % (r.name, key), getattr(r, key)) for r in resources
               for key in ("device", "scsi_id", "scsi_sn", "vendor_id", "product_id")]
    for where, value in places:
        try:
            value.encode("ascii")
        except UnicodeError:
            problems.append("%s: '%s' must be plain ASCII" % (where, value))


def _validate_resource(problems, resource):
    where = "[resource %s]" % resource.name
    if not os.path.isabs(resource.device):
        problems.append("%s device: '%s' must be an absolute path such as /dev/drbd0"
                        % (where, resource.device))
    if _check_int(problems, where + " lun", resource.lun, 1, 255):
        resource.lun = int(resource.lun)
    if not _SCSI_ID.match(resource.scsi_id):
        # tgt turns scsi_id into the NAA-6 designator XenServer identifies the LUN
        # by, one hex digit per character: anything but hex digits would collide.
        problems.append("%s scsi_id: '%s' must be 1 to 31 hexadecimal digits (it becomes "
                        "the LUN's NAA identifier)" % (where, resource.scsi_id))
    for key, limit in (("scsi_sn", 36), ("vendor_id", 8), ("product_id", 16)):
        value = getattr(resource, key)
        if len(value) > limit or not _SCSI_TEXT.match(value) or "," in value or "=" in value:
            problems.append("%s %s: '%s' must be 1 to %d printable ASCII characters "
                            "without spaces, commas or =" % (where, key, value, limit))


def _check_unique(problems, resources, attribute):
    seen = {}
    for resource in resources:
        value = getattr(resource, attribute)
        if value in seen:
            problems.append("[resource %s] %s: %s is also used by [resource %s]; each "
                            "resource needs its own" % (resource.name, attribute, value,
                                                        seen[value]))
        seen.setdefault(value, resource.name)


def _check_int(problems, where, text, lowest, highest):
    try:
        number = int(text)
    except ValueError:
        number = None
    if number is None or not lowest <= number <= highest:
        problems.append("%s: '%s' must be a whole number from %d to %d"
                        % (where, text, lowest, highest))
        return False
    return True


def _check_number(problems, where, text):
    try:
        if float(text) > 0:
            return
    except ValueError:
        pass
    problems.append("%s: '%s' must be a positive number of seconds" % (where, text))


def _check_vip(problems, text):
    address, _, prefix = text.partition("/")
    try:
        valid = (address.count(".") == 3 and bool(socket.inet_aton(address))
                 and 1 <= int(prefix) <= 32)
    except (socket.error, ValueError):
        valid = False
    if not valid:
        problems.append("[vip] address: '%s' must be an IPv4 address with prefix length, "
                        "e.g. 192.0.2.100/24" % text)


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
    "state_dir": "/var/run/iscsi-ha",
    "log_file": "/var/log/iscsi-ha.log",
    "inventory": "/etc/xensource-inventory",
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
