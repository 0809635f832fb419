"""dom0's LVM device filter: does LVM keep its hands off the DRBD devices and their disks?

The SR's volume group lives on the iSCSI LUN. Without a filter, LVM on dom0
also finds the same physical volume on ``/dev/drbdN`` and on the disk behind
it, up to three copies of one PV, and may open the disk under DRBD's feet.
lvm.conf's ``devices { global_filter = [...] filter = [...] }`` are lists of
``"a|regex|"`` (accept) and ``"r|regex|"`` (reject) patterns; the first
pattern that matches a device path decides, and a path that none matches is
accepted. A device must pass both lists to be scanned.
"""

import re

_SETTING = re.compile(r"(?m)^\s*(global_filter|filter)\s*=\s*\[")
_ITEM = re.compile(r'\s*(?:"((?:[^"\\]|\\.)*)"\s*,?|(\]))')


def _strip_comments(text):
    # lvm.conf comments run from # to the end of the line, outside strings; the
    # patterns iscsi-ha cares about hold no "#" in the lists people write.
    lines = []
    for line in text.splitlines():
        in_string = False
        for index, char in enumerate(line):
            if char == '"':
                in_string = not in_string
            elif char == "#" and not in_string:
                line = line[:index]
                break
        lines.append(line)
    return "\n".join(lines)


def _strings(text, start, name):
    """The string items of the list that opens just before ``start``."""
    items = []
    while True:
        match = _ITEM.match(text, start)
        if match is None:
            raise ValueError("lvm.conf %s is not a list of quoted patterns" % name)
        if match.group(2):
            return items
        items.append(match.group(1))
        start = match.end()


def _pattern(name, pattern):
    if len(pattern) < 3 or pattern[0] not in "ar":
        raise ValueError("lvm.conf %s pattern %r is not a|regex| or r|regex|" % (name, pattern))
    delimiter, body = pattern[1], pattern[2:]
    if not body.endswith(delimiter):
        raise ValueError("lvm.conf %s pattern %r does not end with %r"
                         % (name, pattern, delimiter))
    return pattern[0] == "a", body[:-1]


def filters(text):
    """``{"global_filter": [(accept, regex), ...], "filter": [...]}`` from lvm.conf text.

    A setting given twice keeps its last value, as LVM does.
    """
    text = _strip_comments(text)
    found = {}
    for match in _SETTING.finditer(text):
        name = match.group(1)
        found[name] = [_pattern(name, item) for item in _strings(text, match.end(), name)]
    return found


def _accepts(patterns, path):
    for accept, regex in patterns:
        if re.search(regex, path):
            return accept
    return True


def scanned(text, path):
    """Whether LVM with this lvm.conf would scan the device at ``path``."""
    settings = filters(text)
    return all(_accepts(settings.get(name, []), path) for name in ("global_filter", "filter"))


# Path characters a pattern may hold as they are; "." and "+" go in brackets. lvm.conf
# strings treat a backslash as an escape, so no backslash is ever written.
_PLAIN_PATH = re.compile(r"^/[A-Za-z0-9/_.:+-]+$")


def reject_pattern(path):
    """The lvm.conf pattern that rejects exactly ``path``, or None if it has odd characters."""
    if not _PLAIN_PATH.match(path):
        return None
    return '"r|^%s$|"' % path.replace(".", "[.]").replace("+", "[+]")


def suggest(text, paths):
    """The ``global_filter = [...]`` line that rejects ``paths`` before what lvm.conf has.

    The patterns already in ``global_filter`` follow the new ones unchanged; without
    any, ``"a|.*|"`` accepts the rest. None when a path cannot be written as a pattern.
    """
    rejects = [reject_pattern(path) for path in paths]
    if None in rejects:
        return None
    text = _strip_comments(text)
    kept = ['"a|.*|"']
    for match in _SETTING.finditer(text):
        if match.group(1) == "global_filter":
            kept = ['"%s"' % item for item in _strings(text, match.end(), "global_filter")]
    return "global_filter = [ %s ]" % ", ".join(rejects + [k for k in kept if k not in rejects])
