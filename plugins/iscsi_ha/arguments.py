"""Plugin arguments: every value arrives as a string; check them before acting."""

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


def parse(fn, args, spec):
    """Return ``{name: value}`` for ``args`` per ``spec`` (``{name: (converter, default)}``).

    Raises :class:`BadArgument` naming the first unknown, missing or bad argument.
    """
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
        try:
            values[name] = convert(args[name])
        except ValueError as exc:
            raise BadArgument("fn=%s argument %s='%s' is not valid: %s"
                              % (fn, name, args[name], exc), details=[name])
    return values
