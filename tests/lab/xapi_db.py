"""The XAPI simulator's database and message store (Python 3 only).

Owns: the objects of the simulated pool (pool, host, host_metrics, SR, PBD) by
opaque ref, each stamped with the database generation that created it and the
one that last changed it; the rules of xapi's map fields (``MAP_DUPLICATE_KEY``
naming the object's ref, an empty key an ``INTERNAL_ERROR``); the messages,
which xapi keeps outside the database with a generation of their own; copies
of both, which is what a host holds as its backup and starts from when it
becomes master; what ``event.from`` makes of the stamps (its class
subscriptions, the events since a token, its tokens, ``"<database
generation>,<message generation>"``); and :class:`XapiFailure`, the error a
client receives, which every layer of the simulator raises.  Values are written
the way xapi writes them (refs, dates).

It knows nothing of sessions, hosts' roles or the network: ``xapi_sim`` holds
its lock around every use and decides what a call may see.
"""

import copy
import datetime
import uuid
import xmlrpc.client

NULL_REF = "OpaqueRef:NULL"
# The classes the lab's database holds, as xapi names them; event.from and
# valid_ref_counts use the lower-case form.  Messages live outside the database.
TABLES = ("pool", "host", "host_metrics", "SR", "PBD")
# How Printexc shows the exception xapi's database raises for an empty map key.
EMPTY_KEY_IN_MAP = "Xapi_database.Db_exn.Empty_key_in_map"


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

    def copy(self):
        """An independent copy, generation included: a host's backup of the database."""
        return copy.deepcopy(self)

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

    def add_to_map(self, cls, ref, field, key, value):
        """``<cls>.add_to_<field>``: xapi's master refuses any key already there."""
        row = self.row(cls, ref)
        if key == "":
            raise XapiFailure("INTERNAL_ERROR", EMPTY_KEY_IN_MAP)
        if key in row.record[field]:
            raise XapiFailure("MAP_DUPLICATE_KEY", cls, field, ref, key)
        self.update(ref, {field: dict(row.record[field], **{key: value})})

    def remove_from_map(self, cls, ref, field, key):
        """``<cls>.remove_from_<field>``: a missing key is no error and changes nothing."""
        row = self.row(cls, ref)
        if key in row.record[field]:
            remaining = dict(row.record[field])
            del remaining[key]
            self.update(ref, {field: remaining})

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
        """event.from's valid_ref_counts: every table, whatever the subscription."""
        return {table.lower(): len(self.rows(table)) for table in TABLES}

    def changes_since(self, generation, subscriptions):
        """event.from's events for rows added or changed after ``generation``."""
        changed = []
        for row in self._rows.values():
            cls = row.cls.lower()
            if row.modified <= generation or not subscriptions.matches(cls, row.ref):
                continue
            if row.created > generation:
                changed.append((row.created, "add", cls, row))
            else:
                changed.append((row.modified, "mod", cls, row))
        changed.sort(key=lambda change: change[0])
        return [{"id": str(stamp), "timestamp": "0.0", "class": cls,
                 "operation": operation, "ref": row.ref,
                 "snapshot": copy.deepcopy(row.record)}
                for stamp, operation, cls, row in changed]


class Messages(object):
    """xapi's messages: kept apart from the database, with their own generation."""

    def __init__(self):
        self.generation = 0
        self._messages = []  # (generation, ref, record), oldest first

    def copy(self):
        return copy.deepcopy(self)

    def add(self, record):
        self.generation += 1
        ref = new_ref()
        self._messages.append((self.generation, ref, record))
        return ref

    def records(self):
        return {ref: copy.deepcopy(record) for _, ref, record in self._messages}

    def record(self, ref):
        for _, known, record in self._messages:
            if known == ref:
                return copy.deepcopy(record)
        raise XapiFailure("HANDLE_INVALID", "message", ref)

    def ref_by_uuid(self, message_uuid):
        for _, ref, record in self._messages:
            if record["uuid"] == message_uuid:
                return ref
        raise XapiFailure("UUID_INVALID", "message", message_uuid)

    def events_since(self, generation, subscriptions):
        # xapi gives message events no database stamp: their id is "0".
        return [{"id": "0", "timestamp": "0.0", "class": "message", "operation": "add",
                 "ref": ref, "snapshot": copy.deepcopy(record)}
                for stamp, ref, record in self._messages
                if stamp > generation and subscriptions.matches("message", ref)]


class Subscriptions(object):
    """event.from's class list: ``*``, a class name, or ``class/ref`` (any case)."""

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
    """The (database, message) generations an event.from token stands for ("": the start)."""
    if token == "":
        return 0, 0
    parts = str(token).split(",")
    if len(parts) != 2 or not all(part.isdigit() for part in parts):
        raise XapiFailure("EVENT_FROM_TOKEN_PARSE_FAILURE", token)
    return int(parts[0]), int(parts[1])


def make_token(generation, message_generation):
    # Zero-padded, as xapi writes it, so that tokens compare as strings.
    return "%020d,%020d" % (generation, message_generation)
