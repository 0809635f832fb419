"""Plugin arguments: every value arrives as a string; check them before acting.

:data:`SPECS` is the one list of what each plugin function takes; the plugin
entry checks calls against it, and ``status`` reports promote's names from it
(``promote_accepts``), so a controller knows what this version understands.
"""

import json

import six

from iscsi_ha import install, validate
from iscsi_ha.errors import BadArgument

REQUIRED = object()  # a spec default meaning "the caller must pass it"

_TRUE = ("true", "yes", "1", "on")
_FALSE = ("false", "no", "0", "off")


def boolean(value):
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError("use true or false")


def text(value):
    return value


def one_of(*choices):
    def check(value):
        if value not in choices:
            raise ValueError("use one of %s" % ", ".join(choices))
        return value
    return check


def connection_list(value):
    """A JSON list of ``"ip:port"`` strings (initiator connections), duplicates dropped."""
    fix = 'a JSON list of "ip:port" strings such as ["192.0.2.50:41000"]'
    try:
        items = json.loads(value)
    except ValueError:
        raise ValueError("not JSON; use %s" % fix)
    except RuntimeError:  # nested deeper than Python recurses (RecursionError on 3.x)
        raise ValueError("JSON nested too deep; use %s" % fix)
    if not isinstance(items, list):
        raise ValueError("not a list; use %s" % fix)
    found, seen = [], set()
    for item in items:
        address, colon, port = (item.rpartition(":") if isinstance(item, six.string_types)
                                else ("", "", ""))
        try:
            validate.ipv4(address)
            validate.whole_number(port, 1, 65535)
        except ValueError:
            raise ValueError("%s is not ip:port (an IPv4 address, a colon and a port from "
                             "1 to 65535); use %s" % (json.dumps(item), fix))
        if item not in seen:  # a set: a long list must not take quadratic time
            seen.add(item)
            found.append(item)
    return found


SPECS = {
    "status": {"format": (one_of("json", "table"), "json")},
    "promote": {"force": (boolean, False), "peer_down": (boolean, False),
                "reason": (text, ""),
                # The old owner's initiator connections, to reset after the claim.
                "tickle": (connection_list, ()),
                # The old owner released the VIP in this switchover: no probe needed.
                "vip_released": (boolean, False),
                # Sent beside the peer's demote: wait for DRBD to show the peer Secondary.
                "await_demote": (boolean, False)},
    "demote": {"reason": (text, "")},
    "outdate": {"resource": (text, REQUIRED), "reason": (text, "")},
    "check": {},
    "version": {},
    "manual-mode": {"enabled": (boolean, REQUIRED), "reason": (text, "")},
    "remember-initiators": {"connections": (connection_list, REQUIRED)},
    # What `iscsi-ha setup` rendered, or the config `iscsi-ha config restore` brings back.
    "install-files": {"files": (install.file_list, REQUIRED), "dry_run": (boolean, False)},
    "resolve-split-brain": {"resource": (text, REQUIRED),
                            "role": (one_of("victim", "survivor"), REQUIRED),
                            "reason": (text, "")},
}


def parse(fn, args, spec):
    """Return ``{name: value}`` for ``args`` per ``spec`` (``{name: (converter, default)}``).

    Raises :class:`BadArgument` naming the first unknown, missing or bad argument.
    xapi passes a map of strings; argv is XML-RPC, so anything else can come too
    (another caller's struct of numbers, a list), and is refused the same way.
    """
    if not isinstance(args, dict):
        raise BadArgument("fn=%s takes its arguments as a map of strings (args:NAME=VALUE), "
                          "not %s" % (fn, _kind(args)), details=["args"])
    for name in args:
        if not isinstance(name, six.string_types):
            raise BadArgument("fn=%s argument name %r is %s, not a string; pass "
                              "args:NAME=VALUE" % (fn, name, _kind(name)),
                              details=[six.text_type(name)])
    for name in sorted(args):
        if name not in spec:
            allowed = ", ".join(sorted(spec)) or "none"
            raise BadArgument("fn=%s does not take argument '%s'; allowed: %s"
                              % (fn, name, allowed), details=[name])
    values = {}
    for name, (convert, default) in spec.items():
        if name not in args:
            if default is REQUIRED:
                raise BadArgument("fn=%s needs argument %s (args:%s=...)" % (fn, name, name),
                                  details=[name])
            values[name] = default
            continue
        if not isinstance(args[name], six.string_types):
            raise BadArgument("fn=%s argument %s is %s, not a string; pass it as text "
                              "(args:%s=VALUE)" % (fn, name, _kind(args[name]), name),
                              details=[name])
        try:
            values[name] = convert(args[name])
        except ValueError as exc:
            raise BadArgument("fn=%s argument %s='%s' is not valid: %s"
                              % (fn, name, args[name], exc), details=[name])
    return values


def _kind(value):
    if value is None:
        return "nil"
    name = type(value).__name__
    return "%s %s" % ("an" if name[0] in "aeiou" else "a", name)
