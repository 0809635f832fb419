"""The rules for values people give iscsi-ha, each written once.

The config file, the DRBD resource file writer and the target all take values
from a sysadmin; each rule they share lives here. Every function returns the
canonical value or raises :class:`ValueError` whose message quotes the bad
value and says what to write instead. Callers put the field in front
(``"[vip] address: " + str(exc)``) and report it their own way.
"""

import math
import re

import six
from six.moves.urllib.parse import urlsplit

# No leading zeros: inet_aton and the tools built on it read 010 as octal 8.
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"
_IPV4 = re.compile(r"^%s(\.%s){3}\Z" % (_OCTET, _OCTET))
_PREFIX = re.compile(r"^([1-9]|[12][0-9]|3[0-2])\Z")
_DIGITS = re.compile(r"^[0-9]+\Z")
_DECIMAL = re.compile(r"^([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?\Z")
# Linux (dev_valid_name): at most 15 bytes, no whitespace, '/' or ':'.
_INTERFACE = re.compile(r"^[\x21-\x2e\x30-\x39\x3b-\x7e]{1,15}\Z")
# tgtadm takes the identity as a comma-separated key=value list.
_SCSI_TEXT = re.compile(r"^[\x21-\x2b\x2d-\x3c\x3e-\x7e]+\Z")
_SCSI_ID = re.compile(r"^[0-9a-fA-F]{1,31}\Z")
_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?\Z")
# Deliberately plain: what an SMTP server takes for a mailbox, without quoting or comments.
_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+"
                    r"@[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?\Z")

# INQUIRY and VPD field widths: tgt silently truncates anything longer.
SCSI_TEXT_LIMITS = {"scsi_sn": 36, "vendor_id": 8, "product_id": 16}
SCSI_IDENTITY_KEYS = ("scsi_id", "scsi_sn", "vendor_id", "product_id")


def ipv4(text):
    """A dotted-quad IPv4 address such as ``192.0.2.10``."""
    if isinstance(text, six.string_types) and _IPV4.match(text):
        return text
    raise ValueError("'%s' must be an IPv4 address: four numbers from 0 to 255 separated "
                     "by dots, without leading zeros, such as 192.0.2.10" % (text,))


def ipv4_with_prefix(text):
    """``"192.0.2.100/24"`` as ``("192.0.2.100", 24)``: an address and its subnet."""
    address, prefix = _split_prefix(text)
    if address is None:
        raise ValueError("'%s' must be an IPv4 address with prefix length, such as "
                         "192.0.2.100/24 (numbers from 0 to 255 without leading zeros, "
                         "prefix 1 to 32)" % (text,))
    return address, prefix


def ipv4_network(text):
    """A network in CIDR form with its host bits zero, such as ``192.0.2.0/24``."""
    address, prefix = _split_prefix(text)
    if address is None:
        raise ValueError("'%s' must be an IPv4 network such as 192.0.2.0/24 (numbers from "
                         "0 to 255 without leading zeros, prefix 1 to 32)" % (text,))
    number = _as_int(address)
    mask = (0xffffffff << (32 - prefix)) & 0xffffffff
    if number & ~mask:
        raise ValueError("'%s' has host bits set; write the network as %s/%d"
                         % (text, _as_dotted(number & mask), prefix))
    return "%s/%d" % (address, prefix)


def _split_prefix(text):
    if not isinstance(text, six.string_types):
        return None, None
    address, slash, prefix = text.partition("/")
    if not (slash and _IPV4.match(address) and _PREFIX.match(prefix)):
        return None, None
    return address, int(prefix)


def _as_int(address):
    number = 0
    for octet in address.split("."):
        number = number * 256 + int(octet)
    return number


def _as_dotted(number):
    return ".".join(str((number >> shift) & 0xff) for shift in (24, 16, 8, 0))


def initiators(text):
    """Who may log in to the target: ``["ALL"]``, or IPv4 addresses and networks.

    ``text`` is ``ALL`` alone or a space-separated list such as
    ``192.0.2.11 192.0.2.12 198.51.100.0/24``.
    """
    words = text.split() if isinstance(text, six.string_types) else []
    if words == ["ALL"]:
        return words
    if not words:
        raise ValueError("'%s' must be ALL or a space-separated list of IPv4 addresses "
                         "and networks" % (text,))
    if "ALL" in words:
        raise ValueError("'%s': ALL already allows every initiator; write ALL alone or "
                         "only the addresses and networks" % (text,))
    allowed = []
    for word in words:
        try:
            allowed.append(ipv4_network(word) if "/" in word else ipv4(word))
        except ValueError as exc:
            raise ValueError("%s; separate addresses and networks with spaces, or write "
                             "ALL alone" % exc)
        if allowed[-1] in allowed[:-1]:
            raise ValueError("'%s' is listed twice; list it once" % (word,))
    return allowed


def whole_number(value, lowest, highest):
    """A whole number from ``lowest`` to ``highest``, given as digits or an int."""
    number = None
    if isinstance(value, six.integer_types) and not isinstance(value, bool):
        number = value
    elif isinstance(value, six.string_types) and _DIGITS.match(value):
        number = int(value)
    if number is None or not lowest <= number <= highest:
        raise ValueError("'%s' must be a whole number from %d to %d"
                         % (value, lowest, highest))
    return number


def seconds(value, highest=86400):
    """A finite number of seconds above 0 and at most ``highest`` (a day by default).

    ``inf``, ``nan`` and overflowing numbers such as ``1e999`` would make every
    deadline built on them unreachable, so they are refused like words.
    """
    number = None
    try:
        if isinstance(value, (float,) + six.integer_types) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, six.string_types) and _DECIMAL.match(value):
            number = float(value)
    except OverflowError:  # an int too big for a float
        number = None
    if number is None or math.isinf(number) or math.isnan(number) or not (
            0 < number <= highest):
        raise ValueError("'%s' must be a number of seconds above 0 and at most %g, such "
                         "as 10 or 2.5" % (value, highest))
    return number


def scsi_identity(key, value):
    """One SCSI identity value of a LUN; ``key`` is one of :data:`SCSI_IDENTITY_KEYS`.

    ``scsi_id`` is 1 to 31 hex digits: tgt builds the LUN's NAA designator (what
    XenServer knows the SR's LUN by) from its hex digits alone, so any other
    character would make two ids collide. The others are printable ASCII
    without spaces, commas or ``=``, within the width of their INQUIRY field.
    """
    if key == "scsi_id":
        if isinstance(value, six.string_types) and _SCSI_ID.match(value):
            return value
        raise ValueError("'%s' must be 1 to 31 hexadecimal digits (it becomes the LUN's "
                         "NAA identifier)" % (value,))
    limit = SCSI_TEXT_LIMITS[key]
    if isinstance(value, six.string_types) and len(value) <= limit and _SCSI_TEXT.match(
            value):
        return value
    raise ValueError("'%s' must be 1 to %d printable ASCII characters without spaces, "
                     "commas or =" % (value, limit))


def interface(text):
    """A Linux network interface name such as ``xenbr0`` or ``bond1``."""
    if (isinstance(text, six.string_types) and _INTERFACE.match(text)
            and text not in (".", "..")):
        return text
    raise ValueError("'%s' is not a network interface name (at most 15 characters, no "
                     "spaces, '/' or ':'); use the name ip link shows" % (text,))


def on_off(text):
    """``on`` or ``off`` as a bool."""
    if text in ("on", "off"):
        return text == "on"
    raise ValueError("'%s' must be on or off" % (text,))


def http_url(text):
    """An ``http://`` or ``https://`` URL naming a host, without credentials in it."""
    fix = "such as https://192.0.2.1 or https://xcp-a.example.com:443"
    if not isinstance(text, six.string_types) or re.search(r"[^\x21-\x7e]", text):
        raise ValueError("'%s' must be an http or https URL without spaces, %s"
                         % (text, fix))
    try:
        parts = urlsplit(text)
    except ValueError:  # e.g. an unclosed [ in the host
        parts = None
    if parts is None or parts.scheme not in ("http", "https"):
        raise ValueError("'%s' must be an http or https URL, %s" % (text, fix))
    if "@" in parts.netloc:
        raise ValueError("'%s' holds credentials; remove them from the URL and set the "
                         "user name and password file instead" % (text,))
    host, colon, port = parts.netloc.partition(":")
    if re.match(r"^[0-9.]+\Z", host) and not _IPV4.match(host):
        raise ValueError("'%s': the host %s is not an IPv4 address (four numbers from 0 "
                         "to 255 without leading zeros), %s" % (text, host, fix))
    if not _HOST.match(host) or (colon and not (_DIGITS.match(port)
                                                and 1 <= int(port) <= 65535)):
        raise ValueError("'%s' must name a host and optionally a port from 1 to 65535, %s"
                         % (text, fix))
    return text


def host_name(text):
    """A DNS name or IPv4 address such as ``smtp.example.com`` or ``192.0.2.25``."""
    if isinstance(text, six.string_types) and _HOST.match(text) and len(text) <= 253:
        if not re.match(r"^[0-9.]+\Z", text) or _IPV4.match(text):
            return text
    raise ValueError("'%s' is not a host name or IPv4 address; use one such as "
                     "smtp.example.com or 192.0.2.25" % (text,))


def email_address(text):
    """One plain e-mail address, ``name@domain``."""
    if isinstance(text, six.string_types) and _EMAIL.match(text) and len(text) <= 254:
        return text
    raise ValueError("'%s' is not an e-mail address; write it as name@example.com, without "
                     "a display name or angle brackets" % (text,))


def email_addresses(text):
    """E-mail addresses separated by spaces, as a list; empty means none."""
    found = []
    for word in text.split():
        found.append(email_address(word))
        if found[-1] in found[:-1]:
            raise ValueError("'%s' is listed twice; list it once" % (word,))
    return found
