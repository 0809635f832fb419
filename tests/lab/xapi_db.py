"""The XAPI simulator's database (Python 3 only).

Owns: the objects of the simulated pool (pool, host, host_metrics, message) by
opaque ref, each stamped with the database generation that created it and the
one that last changed it; what ``event.from`` makes of those stamps (its class
subscriptions, the events since a generation, its tokens); and
:class:`XapiFailure`, the error a client receives, which every layer of the
simulator raises.  Values are written the way xapi writes them (refs, dates).

It knows nothing of sessions, hosts' roles or the network: ``xapi_sim`` holds
its lock around every use and decides what a call may see.
"""

import copy
import datetime
import uuid
import xmlrpc.client

NULL_REF = "OpaqueRef:NULL"
# Classes that are database tables in xapi; messages live outside the database.
TABLES = ("pool", "host", "host_metrics")


class XapiFailure(Exception):
    """A XAPI error: ``description`` is the ErrorDescription a client receives."""

    def __init__(self, code, *params):
        Exception.__init__(self, code, *params)
        self.description = [code] + [str(param) for param in params]


def new_ref():
    return "OpaqueRef:%s" % uuid.uuid4()


def xapi_now():
    """The time as a dateTime.iso8601 value written the way xapi writes them (UTC, Z)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return xmlrpc.client.DateTime(now.strftime("%Y%m%dT%H:%M:%SZ"))


class _Row(object):
    __slots__ = ("cls", "ref", "record", "created", "modified")

    def __init__(self, cls, ref, record, generation):
        self.cls = cls
        self.ref = ref
        self.record = record
        self.created = generation
        self.modified = generation


class Database(object):
    """Objects by ref, each stamped with the generation that created and last changed it.

    Not locked itself: the simulator holds its lock around every use.
    """

    def __init__(self):
        self.generation = 0
        self._rows = {}

    def add(self, cls, record):
        self.generation += 1
        ref = new_ref()
        self._rows[ref] = _Row(cls, ref, record, self.generation)
        return ref

    def update(self, ref, changes):
        self.generation += 1
        row = self._rows[ref]
        row.record.update(changes)
        row.modified = self.generation

    def row(self, cls, ref):
        row = self._rows.get(ref) if isinstance(ref, str) else None
        if row is None or row.cls != cls:
            raise XapiFailure("HANDLE_INVALID", cls, ref)
        return row

    def record(self, cls, ref):
        return copy.deepcopy(self.row(cls, ref).record)

    def rows(self, cls):
        return sorted((row for row in self._rows.values() if row.cls == cls),
                      key=lambda row: row.created)

    def ref_by_uuid(self, cls, object_uuid):
        for row in self.rows(cls):
            if row.record["uuid"] == object_uuid:
                return row.ref
        raise XapiFailure("UUID_INVALID", cls, object_uuid)

    def counts(self):
        return {table: len(self.rows(table)) for table in TABLES}

    def changes_since(self, generation, subscriptions):
        """event.from's events for rows added or changed after ``generation``."""
        changed = []
        for row in self._rows.values():
            if row.modified <= generation or not subscriptions.matches(row.cls, row.ref):
                continue
            if row.created > generation:
                changed.append((row.created, "add", row))
            else:
                changed.append((row.modified, "mod", row))
        changed.sort(key=lambda change: change[0])
        return [{"id": str(stamp), "timestamp": "0.0", "class": row.cls,
                 "operation": operation, "ref": row.ref,
                 "snapshot": copy.deepcopy(row.record)}
                for stamp, operation, row in changed]


class Subscriptions(object):
    """event.from's class list: ``*``, a class name, or ``class/ref``."""

    def __init__(self, classes):
        if not isinstance(classes, list):
            raise XapiFailure("FIELD_TYPE_ERROR", "classes")
        self.everything = "*" in classes
        self.classes = set()
        self.objects = set()
        for entry in classes:
            cls, _, ref = str(entry).partition("/")
            if ref:
                self.objects.add((cls.lower(), ref))
            else:
                self.classes.add(cls.lower())

    def matches(self, cls, ref):
        return self.everything or cls in self.classes or (cls, ref) in self.objects


def parse_token(token):
    """The generation an event.from token stands for ("" means: from the start)."""
    if token == "":
        return 0
    parts = str(token).split(",")
    if len(parts) != 2 or not all(part.isdigit() for part in parts):
        raise XapiFailure("EVENT_FROM_TOKEN_PARSE_FAILURE", token)
    return int(parts[0])


def make_token(generation):
    # xapi's token is "<database generation>,<message generation>", zero-padded so
    # tokens compare as strings; here messages share the database's generation.
    return "%020d,%020d" % (generation, generation)
