"""Block I/O to one iSCSI LUN through libiscsi, for the lab's tests and demo (Python 3 only).

Owns: an initiator session to one LUN (login, READ CAPACITY(16), READ(16),
WRITE(16), SYNCHRONIZE CACHE(16), INQUIRY VPD pages, MODE SENSE(6) of the
caching page, logout); the seeded block
pattern that lets a later run verify data without storing it; the probe
that measures how long I/O through a portal stayed dark; the writers that
keep writing through an event, logging what the target acknowledged (an
impatient one that logs in again after any failure, and the bench's session
writer, a long-lived session as patient as dom0's initiator), with the check
that every acknowledged write is still there afterwards and the reading of
dark windows from a session writer's log.

    python3 -m tests.lab.iscsi_io iscsi://192.0.2.10/iqn.2026-01.example:ha/1 capacity

prints one JSON object; exit 0 on success, 1 when ``verify`` finds a
mismatch, 2 on any error (a one-line message on stderr).

libiscsi is driven through its asynchronous calls and a poll loop of our own,
so that every step has a deadline: its synchronous calls can wait forever on a
silent peer, and its automatic reconnect retries forever with sleeps.  A
session that missed a deadline or lost its connection is destroyed, never
reused; the next call must ``connect()`` again.  The session writer alone
turns libiscsi's automatic reconnect on (``auto_reconnect``), because being
that kind of initiator is what it measures.
"""

import argparse
import bisect
import contextlib
import ctypes
import hashlib
import json
import math
import os
import select
import signal
import sys
import time

DEFAULT_LIBRARY = "libiscsi.so.7"
DEFAULT_INITIATOR_NAME = "iqn.2026-01.org.example.iscsi-ha:lab-io"
DEFAULT_TIMEOUT = 5.0
DEFAULT_PROBE_TIMEOUT = 1.0
# Bytes per READ(16)/WRITE(16) command: libiscsi's default MaxBurstLength, which
# also keeps the memory a large write or verify needs small.
MAX_TRANSFER_BYTES = 262144
# Enough for the pages we ask for; the page header tells the real length.
VPD_ALLOCATION_LENGTH = 1024
# MODE SENSE(6) can return at most 255 bytes (its length field is one byte).
MODE_SENSE_ALLOCATION_LENGTH = 255
CACHING_PAGE = 0x08
# Byte 2 of the caching mode page (SBC): write cache enabled, read cache disabled.
_WCE, _RCD = 0x04, 0x01
# enum scsi_modesense_page_control in scsi-lowlevel.h
MODE_SENSE_CURRENT = 0
MODE_SENSE_CHANGEABLE = 1
# Logout is a courtesy to the target; a session that cannot log out soon is dropped.
LOGOUT_TIMEOUT = 1.0
# A long-lived session (the session writer) is never more impatient than dom0's
# open-iscsi, whose noop-out notices a dead connection after 5 s + 5 s: TCP
# keepalive after 5 s idle, one probe, 5 s apart; unacknowledged data may stay
# unacknowledged 10 s; a command may take 10 s (open-iscsi's own SCSI timeout
# is longer still).  So whatever dark time the bench measures is the product's.
SESSION_KEEPALIVE = (5, 1, 5)  # idle s, probes, interval s
SESSION_TCP_USER_TIMEOUT_MS = 10000
SESSION_COMMAND_TIMEOUT = 10.0
# How often one write is retried (UNIT ATTENTION after a reconnect, a
# replayed command the target refused) before the writer logs in afresh.
SESSION_RETRIES = 5
# SCSI sense key UNIT ATTENTION; ASC 0x29: power on, reset or bus device reset
# occurred (libiscsi reports ASC and ASCQ together as one number).
SENSE_UNIT_ATTENTION = 0x06
ASC_RESET_OCCURRED = 0x29
# Verify reports at most this many bad LBAs (and always the total).
MAX_REPORTED_MISMATCHES = 1000

# enum scsi_status and enum iscsi_session_type in iscsi.h
SCSI_STATUS_GOOD = 0
SCSI_STATUS_CHECK_CONDITION = 2
SCSI_STATUS_CANCELLED = 0x0F000000
SCSI_STATUS_TIMEOUT = 0x0F000002
ISCSI_SESSION_NORMAL = 2

_STATUS_NAMES = {
    0x08: "BUSY",
    0x18: "RESERVATION CONFLICT",
    0x28: "TASK SET FULL",
    0x40: "TASK ABORTED",
}


class IscsiIoError(Exception):
    """Base class: the message says what failed and, where known, why."""


class LibraryMissing(IscsiIoError):
    pass


class BadUrl(IscsiIoError):
    pass


class BadRequest(IscsiIoError):
    """The caller asked for something the LUN cannot do (e.g. past its end)."""


class LoginFailed(IscsiIoError):
    pass


class ConnectionLost(IscsiIoError):
    pass


class IscsiTimeout(IscsiIoError):
    pass


class ScsiCommandFailed(IscsiIoError):
    """The target answered a command with a non-GOOD status."""

    def __init__(self, message, status, sense_key=None, ascq=None):
        IscsiIoError.__init__(self, message)
        self.status = status
        self.sense_key = sense_key
        self.ascq = ascq


class _IscsiUrl(ctypes.Structure):
    """``struct iscsi_url`` from iscsi.h (MAX_STRING_SIZE is 255)."""

    _fields_ = [
        ("portal", ctypes.c_char * 256),
        ("target", ctypes.c_char * 256),
        ("user", ctypes.c_char * 256),
        ("passwd", ctypes.c_char * 256),
        ("target_user", ctypes.c_char * 256),
        ("target_passwd", ctypes.c_char * 256),
        ("lun", ctypes.c_int),
        ("iscsi", ctypes.c_void_p),
        ("transport", ctypes.c_int),
    ]


class _ScsiSense(ctypes.Structure):
    """``struct scsi_sense`` from scsi-lowlevel.h, filled by scsi_task_get_status()."""

    _fields_ = [
        ("error_type", ctypes.c_ubyte),
        ("key", ctypes.c_int),
        ("ascq", ctypes.c_int),
        ("sense_specific", ctypes.c_uint, 1),
        ("ill_param_in_cdb", ctypes.c_uint, 1),
        ("bit_pointer_valid", ctypes.c_uint, 1),
        ("bit_pointer", ctypes.c_ubyte),
        ("field_pointer", ctypes.c_uint16),
    ]


_COMMAND_CALLBACK = ctypes.CFUNCTYPE(
    None, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)

_PROTOTYPES = {
    # name: (restype, argtypes)
    "iscsi_create_context": (ctypes.c_void_p, [ctypes.c_char_p]),
    "iscsi_destroy_context": (ctypes.c_int, [ctypes.c_void_p]),
    "iscsi_get_error": (ctypes.c_char_p, [ctypes.c_void_p]),
    "iscsi_parse_full_url": (ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_char_p]),
    "iscsi_destroy_url": (None, [ctypes.c_void_p]),
    "iscsi_set_session_type": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_int]),
    "iscsi_set_timeout": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_int]),
    "iscsi_set_noautoreconnect": (None, [ctypes.c_void_p, ctypes.c_int]),
    "iscsi_set_tcp_keepalive": (None, [ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                                       ctypes.c_int]),
    "iscsi_set_tcp_user_timeout": (None, [ctypes.c_void_p, ctypes.c_int]),
    "iscsi_full_connect_async": (ctypes.c_int, [
        ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, _COMMAND_CALLBACK, ctypes.c_void_p]),
    "iscsi_logout_async": (ctypes.c_int, [ctypes.c_void_p, _COMMAND_CALLBACK, ctypes.c_void_p]),
    "iscsi_is_logged_in": (ctypes.c_int, [ctypes.c_void_p]),
    "iscsi_get_fd": (ctypes.c_int, [ctypes.c_void_p]),
    "iscsi_which_events": (ctypes.c_int, [ctypes.c_void_p]),
    "iscsi_service": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_int]),
    "iscsi_scsi_command_async": (ctypes.c_int, [
        ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, _COMMAND_CALLBACK,
        ctypes.c_void_p, ctypes.c_void_p]),
    "scsi_cdb_readcapacity16": (ctypes.c_void_p, []),
    "scsi_cdb_read16": (ctypes.c_void_p, [
        ctypes.c_uint64, ctypes.c_uint32, ctypes.c_int, ctypes.c_int, ctypes.c_int,
        ctypes.c_int, ctypes.c_int, ctypes.c_int]),
    "scsi_cdb_write16": (ctypes.c_void_p, [
        ctypes.c_uint64, ctypes.c_uint32, ctypes.c_int, ctypes.c_int, ctypes.c_int,
        ctypes.c_int, ctypes.c_int, ctypes.c_int]),
    "scsi_cdb_synchronizecache16": (ctypes.c_void_p, [
        ctypes.c_uint64, ctypes.c_uint32, ctypes.c_int, ctypes.c_int]),
    "scsi_cdb_inquiry": (ctypes.c_void_p, [ctypes.c_int, ctypes.c_int, ctypes.c_int]),
    "scsi_cdb_modesense6": (ctypes.c_void_p, [
        ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_ubyte]),
    "scsi_task_add_data_in_buffer": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p]),
    "scsi_task_add_data_out_buffer": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p]),
    "scsi_task_get_status": (ctypes.c_int, [ctypes.c_void_p, ctypes.POINTER(_ScsiSense)]),
    "scsi_free_scsi_task": (None, [ctypes.c_void_p]),
    "scsi_sense_key_str": (ctypes.c_char_p, [ctypes.c_int]),
}

_loaded_libraries = {}


def load_library(library=DEFAULT_LIBRARY):
    """The libiscsi shared object with the prototypes we call declared."""
    if library not in _loaded_libraries:
        try:
            lib = ctypes.CDLL(library)
        except OSError as exc:
            raise LibraryMissing(
                "cannot load %s (%s); install the Debian package libiscsi7" % (library, exc))
        for name, (restype, argtypes) in _PROTOTYPES.items():
            try:
                function = getattr(lib, name)
            except AttributeError:
                raise LibraryMissing("%s has no %s(); libiscsi 1.19 or newer is needed"
                                     % (library, name))
            function.restype = restype
            function.argtypes = argtypes
        _loaded_libraries[library] = lib
    return _loaded_libraries[library]


def _one_line(text):
    return "; ".join(part.strip() for part in text.splitlines() if part.strip())


def pattern_block(seed, lba, block_size):
    """The content ``write`` puts in block ``lba`` for ``seed``.

    Every byte depends on seed and LBA, so a block that landed at the wrong LBA,
    or was shifted inside its block, fails verification.
    """
    return hashlib.shake_256(("iscsi-io/%s/%d" % (seed, lba)).encode("utf-8")).digest(block_size)


def pattern(seed, lba, blocks, block_size):
    return b"".join(pattern_block(seed, lba + i, block_size) for i in range(blocks))


class Capacity(object):
    """What READ CAPACITY(16) reported."""

    def __init__(self, block_size, blocks):
        self.block_size = block_size
        self.blocks = blocks

    def as_dict(self):
        return {"block_size": self.block_size, "blocks": self.blocks,
                "bytes": self.block_size * self.blocks}


class IscsiClient(object):
    """One login to the LUN that an ``iscsi://ADDR[:PORT]/IQN/LUN`` URL names.

    ``timeout`` bounds each operation (login, one SCSI command, logout) in
    seconds.  Use as a context manager, or call connect() and close().

    With ``auto_reconnect`` the session behaves as a long-lived initiator's:
    libiscsi itself logs in again when the connection fails and replays what
    was queued (the first replayed command answers UNIT ATTENTION, which the
    caller retries), and TCP gives up on a silent peer no sooner than
    open-iscsi's noop-out would (``SESSION_KEEPALIVE``).
    """

    def __init__(self, url, initiator_name=DEFAULT_INITIATOR_NAME, timeout=DEFAULT_TIMEOUT,
                 library=DEFAULT_LIBRARY, auto_reconnect=False):
        self.url = url
        self.initiator_name = initiator_name
        self.timeout = timeout
        self.auto_reconnect = auto_reconnect
        self.portal = None
        self.target = None
        self.lun = None
        self._lib = load_library(library)
        self._context = None
        self._capacity = None
        # Kept for the object's life: libiscsi holds the raw pointer.
        self._callback = _COMMAND_CALLBACK(self._on_complete)
        self._next_token = 1
        self._finished = {}

    def __enter__(self):
        self.connect()
        return self

    def __exit__(self, *exc_info):
        self.close()

    @property
    def connected(self):
        return self._context is not None

    # -- session ----------------------------------------------------------

    def connect(self):
        """Create a context, parse the URL, connect and log in (and TEST UNIT READY)."""
        if self._context is not None:
            raise IscsiIoError("already connected to %s" % self.url)
        context = self._lib.iscsi_create_context(self.initiator_name.encode("utf-8"))
        if not context:
            raise IscsiIoError("libiscsi refused initiator name %r" % self.initiator_name)
        self._context = context
        self._capacity = None
        try:
            self._parse_url(context)
            self._lib.iscsi_set_session_type(context, ISCSI_SESSION_NORMAL)
            if self.auto_reconnect:
                idle, count, interval = SESSION_KEEPALIVE
                self._lib.iscsi_set_tcp_keepalive(context, idle, count, interval)
                self._lib.iscsi_set_tcp_user_timeout(context, SESSION_TCP_USER_TIMEOUT_MS)
            else:
                # Failures must reach us at once; we decide when to log in again.
                self._lib.iscsi_set_noautoreconnect(context, 1)
            token = self._new_token()
            if self._lib.iscsi_full_connect_async(
                    context, self.portal.encode("utf-8"), self.lun, self._callback, token) != 0:
                raise LoginFailed("cannot connect to %s: %s" % (self.portal, self._error()))
            status, message = self._wait(token, "login to %s" % self.url)
            if status != SCSI_STATUS_GOOD:
                raise LoginFailed("cannot log in to %s: %s" % (self.url, message))
        except BaseException:
            self._destroy()
            raise

    def _parse_url(self, context):
        url = self._lib.iscsi_parse_full_url(context, self.url.encode("utf-8"))
        if not url:
            raise BadUrl(_one_line(self._error()))
        try:
            parsed = _IscsiUrl.from_address(url)
            # libiscsi stores the context in the parsed URL: if that pointer is not
            # where we read it, our copy of the struct layout is wrong.
            if parsed.iscsi != context:
                raise IscsiIoError("struct iscsi_url of this libiscsi does not match iscsi.h 1.19")
            self.portal = parsed.portal.decode("utf-8")
            self.target = parsed.target.decode("utf-8")
            self.lun = parsed.lun
        finally:
            self._lib.iscsi_destroy_url(url)

    def close(self):
        """Log out (briefly, best effort) and free the context; safe to call twice."""
        if self._context is None:
            return
        try:
            if self._lib.iscsi_is_logged_in(self._context):
                token = self._new_token()
                if self._lib.iscsi_logout_async(self._context, self._callback, token) == 0:
                    self._wait(token, "logout", min(self.timeout, LOGOUT_TIMEOUT))
        except IscsiIoError:
            pass
        finally:
            self._destroy()

    def _destroy(self):
        context, self._context = self._context, None
        if context is not None:
            # Runs the callbacks of whatever is still queued, with CANCELLED.
            self._lib.iscsi_destroy_context(context)
        self._finished.clear()

    # -- the event loop ---------------------------------------------------

    def _new_token(self):
        """An id for the next request; also sets libiscsi's timeout for its PDUs."""
        # Only a backstop behind our own deadline: libiscsi counts whole seconds
        # from time(NULL), so a PDU queued late in a second expires up to a second
        # early, hence the extra second.
        self._lib.iscsi_set_timeout(self._context, int(math.ceil(self.timeout)) + 1)
        token = self._next_token
        self._next_token += 1
        return token

    def _error(self):
        text = self._lib.iscsi_get_error(self._context) if self._context else None
        return (text or b"").decode("utf-8", "replace").strip() or "unknown error"

    def _on_complete(self, context, status, command_data, private_data):
        # Read the error now: the next libiscsi call may overwrite it.
        message = self._lib.iscsi_get_error(context) or b""
        self._finished[private_data] = (status, message.decode("utf-8", "replace").strip())

    def _wait(self, token, what, timeout=None):
        """Serve the socket until ``token`` completes; return (status, message).

        On a missed deadline or a dead connection the context is destroyed.
        """
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        while token not in self._finished:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._destroy()
                raise IscsiTimeout("%s: no answer within %.3g s" % (what, limit))
            fd = self._lib.iscsi_get_fd(self._context)
            events = self._lib.iscsi_which_events(self._context)
            revents = 0
            if fd < 0:
                message = self._error()
                self._destroy()
                raise ConnectionLost("%s: not connected (%s)" % (what, message))
            if events:
                poller = select.poll()
                poller.register(fd, events)
                ready = poller.poll(remaining * 1000.0)
                revents = ready[0][1] if ready else 0
            else:
                time.sleep(min(remaining, 0.01))
            # revents == 0 still matters: that call runs libiscsi's timeout scan.
            if self._lib.iscsi_service(self._context, revents) < 0 and token not in self._finished:
                message = self._error()
                self._destroy()
                raise ConnectionLost("%s: %s" % (what, message))
        return self._finished.pop(token)

    def _execute(self, task, what, data_in=None, data_out=None):
        """Send a built CDB ``task``, wait for it and free it; raise unless GOOD."""
        if not task:
            raise IscsiIoError("%s: libiscsi could not build the command" % what)
        try:
            if self._context is None:
                raise ConnectionLost("%s: not connected" % what)
            if data_in is not None:
                self._lib.scsi_task_add_data_in_buffer(task, len(data_in), data_in)
            if data_out is not None:
                self._lib.scsi_task_add_data_out_buffer(task, len(data_out), data_out)
            token = self._new_token()
            if self._lib.iscsi_scsi_command_async(
                    self._context, self.lun, task, self._callback, None, token) != 0:
                message = self._error()
                self._destroy()
                raise ConnectionLost("%s: cannot send it: %s" % (what, message))
            status, message = self._wait(token, what)
            if status == SCSI_STATUS_GOOD:
                return
            if status >= SCSI_STATUS_CANCELLED:
                # libiscsi's own verdicts (cancelled, error, timeout): the
                # session's state is unknown, so it is not used again.
                self._destroy()
                if status == SCSI_STATUS_TIMEOUT:
                    raise IscsiTimeout("%s: %s" % (what, message))
                raise ConnectionLost("%s: the session failed (%s)" % (what, message))
            if status == SCSI_STATUS_CHECK_CONDITION:
                sense = _ScsiSense()
                self._lib.scsi_task_get_status(task, ctypes.byref(sense))
                raise ScsiCommandFailed("%s failed: %s" % (what, message), status,
                                        sense_key=sense.key, ascq=sense.ascq)
            raise ScsiCommandFailed("%s failed with status %s: %s" % (
                what, _STATUS_NAMES.get(status, hex(status)), message), status)
        finally:
            # Either completed or cancelled by _destroy(): libiscsi no longer uses it.
            self._lib.scsi_free_scsi_task(task)

    # -- SCSI commands ------------------------------------------------------

    def capacity(self):
        """READ CAPACITY(16): block size and number of blocks."""
        data = ctypes.create_string_buffer(32)
        self._execute(self._lib.scsi_cdb_readcapacity16(), "READ CAPACITY(16)", data_in=data)
        raw = data.raw
        last_lba = int.from_bytes(raw[0:8], "big")
        block_size = int.from_bytes(raw[8:12], "big")
        if block_size == 0:
            raise IscsiIoError("READ CAPACITY(16) reported a block size of 0")
        self._capacity = Capacity(block_size, last_lba + 1)
        return self._capacity

    def _known_capacity(self):
        return self._capacity or self.capacity()

    @property
    def block_size(self):
        return self._known_capacity().block_size

    def check_range(self, lba, blocks):
        capacity = self._known_capacity()
        if lba < 0 or blocks < 1 or lba + blocks > capacity.blocks:
            raise BadRequest("blocks %d..%d are outside the LUN (%d blocks of %d bytes)"
                             % (lba, lba + blocks - 1, capacity.blocks, capacity.block_size))

    def read_blocks(self, lba, blocks):
        """READ(16) of ``blocks`` whole blocks from ``lba``; returns the bytes."""
        self.check_range(lba, blocks)
        block_size = self.block_size
        chunks = []
        for first, count in _chunks(lba, blocks, block_size):
            data = ctypes.create_string_buffer(count * block_size)
            self._execute(self._lib.scsi_cdb_read16(first, count * block_size, block_size,
                                                    0, 0, 0, 0, 0),
                          "READ(16) of %d blocks at LBA %d" % (count, first), data_in=data)
            chunks.append(data.raw)
        return b"".join(chunks)

    def write_blocks(self, lba, data):
        """WRITE(16) of ``data`` (whole blocks) from ``lba``."""
        block_size = self.block_size
        if not data or len(data) % block_size:
            raise BadRequest("writes are whole blocks of %d bytes; got %d bytes"
                             % (block_size, len(data)))
        self.check_range(lba, len(data) // block_size)
        offset = 0
        for first, count in _chunks(lba, len(data) // block_size, block_size):
            size = count * block_size
            buffer = ctypes.create_string_buffer(data[offset:offset + size], size)
            self._execute(self._lib.scsi_cdb_write16(first, size, block_size, 0, 0, 0, 0, 0),
                          "WRITE(16) of %d blocks at LBA %d" % (count, first), data_out=buffer)
            offset += size

    def synchronize_cache(self, lba=0, blocks=0):
        """SYNCHRONIZE CACHE(16); ``blocks=0`` means from ``lba`` to the end."""
        self._execute(self._lib.scsi_cdb_synchronizecache16(lba, blocks, 0, 0),
                      "SYNCHRONIZE CACHE(16)")

    def inquiry_vpd(self, page):
        """The raw bytes of INQUIRY Vital Product Data page ``page`` (header included)."""
        data = ctypes.create_string_buffer(VPD_ALLOCATION_LENGTH)
        what = "INQUIRY VPD page 0x%02x" % page
        self._execute(self._lib.scsi_cdb_inquiry(1, page, VPD_ALLOCATION_LENGTH), what,
                      data_in=data)
        raw = data.raw
        if raw[1] != page:
            raise IscsiIoError("%s: the target returned page 0x%02x" % (what, raw[1]))
        length = 4 + int.from_bytes(raw[2:4], "big")
        return raw[:min(length, VPD_ALLOCATION_LENGTH)]

    def mode_sense(self, page, changeable=False):
        """The raw MODE SENSE(6) data for ``page`` (header and pages, no block descriptor
        asked for); ``changeable`` asks which bits an initiator may change instead of
        their current values."""
        data = ctypes.create_string_buffer(MODE_SENSE_ALLOCATION_LENGTH)
        control = MODE_SENSE_CHANGEABLE if changeable else MODE_SENSE_CURRENT
        what = "MODE SENSE(6) page 0x%02x (%s)" % (page, "changeable" if changeable
                                                   else "current")
        self._execute(self._lib.scsi_cdb_modesense6(1, control, page, 0,
                                                    MODE_SENSE_ALLOCATION_LENGTH),
                      what, data_in=data)
        raw = data.raw
        return raw[:min(raw[0] + 1, MODE_SENSE_ALLOCATION_LENGTH)]


def _chunks(lba, blocks, block_size):
    per_command = max(1, MAX_TRANSFER_BYTES // block_size)
    done = 0
    while done < blocks:
        count = min(per_command, blocks - done)
        yield lba + done, count
        done += count


# -- what the CLI and the lab do ------------------------------------------------

def write_pattern(client, seed, lba, blocks):
    """Write the seeded pattern to ``blocks`` blocks from ``lba`` and flush it."""
    block_size = client.block_size
    client.check_range(lba, blocks)
    for first, count in _chunks(lba, blocks, block_size):
        client.write_blocks(first, pattern(seed, first, count, block_size))
    client.synchronize_cache(lba, blocks)
    return {"seed": seed, "lba": lba, "blocks": blocks, "block_size": block_size}


def verify_pattern(client, seed, lba, blocks):
    """Read back and compare with the seeded pattern; ``ok`` is False on any mismatch."""
    block_size = client.block_size
    client.check_range(lba, blocks)
    mismatched = []
    for first, count in _chunks(lba, blocks, block_size):
        data = client.read_blocks(first, count)
        for index in range(count):
            block = data[index * block_size:(index + 1) * block_size]
            if block != pattern_block(seed, first + index, block_size):
                mismatched.append(first + index)
    return {"ok": not mismatched, "seed": seed, "lba": lba, "blocks": blocks,
            "block_size": block_size, "mismatched_count": len(mismatched),
            "mismatched_blocks": mismatched[:MAX_REPORTED_MISMATCHES]}


def read_report(client, lba, blocks, with_hex=False):
    data = client.read_blocks(lba, blocks)
    report = {"lba": lba, "blocks": blocks, "block_size": client.block_size,
              "sha256": hashlib.sha256(data).hexdigest()}
    if with_hex:
        report["hex"] = data.hex()
    return report


def vpd_report(client, page):
    raw = client.inquiry_vpd(page)
    report = {"page": "0x%02x" % page, "length": len(raw), "hex": raw.hex()}
    if page == 0x80:
        report["unit_serial_number"] = raw[4:].decode("ascii", "replace").strip(" \x00")
    return report


def mode_page(data, page):
    """The bytes of ``page`` (its 2-byte header included) in MODE SENSE(6) ``data``."""
    if len(data) < 4:
        raise IscsiIoError("MODE SENSE(6) returned %d bytes, less than its header"
                           % len(data))
    offset = 4 + data[3]  # the header, then any block descriptors
    while offset + 2 <= len(data):
        code, subpage_format = data[offset] & 0x3F, data[offset] & 0x40
        if subpage_format:
            length = 4 + int.from_bytes(data[offset + 2:offset + 4], "big")
        else:
            length = 2 + data[offset + 1]
        if code == page and not subpage_format:
            found = data[offset:offset + length]
            if len(found) < length:
                break
            return found
        offset += length
    raise IscsiIoError("MODE SENSE(6) data holds no complete page 0x%02x: %s"
                       % (page, data.hex()))


def caching_report(client):
    """What the caching mode page says: is the target's write cache on (WCE), and may
    an initiator switch it (MODE SELECT)?"""
    current = client.mode_sense(CACHING_PAGE)
    changeable = client.mode_sense(CACHING_PAGE, changeable=True)
    page, mask = mode_page(current, CACHING_PAGE), mode_page(changeable, CACHING_PAGE)
    if len(page) < 3 or len(mask) < 3:
        raise IscsiIoError("the caching mode page is too short: %s" % page.hex())
    return {"page": "0x%02x" % CACHING_PAGE, "wce": bool(page[2] & _WCE),
            "rcd": bool(page[2] & _RCD), "wce_changeable": bool(mask[2] & _WCE),
            "hex": current.hex(), "changeable_hex": changeable.hex()}


class ProbeStopped(Exception):
    """SIGTERM during a probe: finish early and report what was seen."""


def probe(url, interval=0.05, duration=5.0, timeout=DEFAULT_PROBE_TIMEOUT, lba=0,
          initiator_name=DEFAULT_INITIATOR_NAME, library=DEFAULT_LIBRARY):
    """Read block ``lba`` every ``interval`` s for ``duration`` s, logging in again after
    any failure; report the longest stretch with no successful read.

    The stretch is measured from the last success (or the probe's start) to the
    next success (or the probe's end), so darkness at either edge counts.
    """
    client = IscsiClient(url, initiator_name=initiator_name, timeout=timeout, library=library)
    started = time.monotonic()
    ends = started + duration
    last_success = started
    longest_gap, longest_gap_start = 0.0, started
    reads_ok = failures = logins = 0
    last_error = None
    last_read_ok = False
    interrupted = False
    next_read = started
    try:
        while True:
            now = time.monotonic()
            if now >= ends:
                break
            # No step may run past the probe's end by more than the logout.
            client.timeout = min(timeout, ends - now)
            try:
                if not client.connected:
                    client.connect()
                    logins += 1
                client.read_blocks(lba, 1)
            except (BadUrl, BadRequest):
                raise
            except IscsiIoError as exc:
                failures += 1
                last_error = str(exc)
                last_read_ok = False
                client.close()
            else:
                succeeded = time.monotonic()
                if succeeded - last_success > longest_gap:
                    longest_gap, longest_gap_start = succeeded - last_success, last_success
                last_success = succeeded
                reads_ok += 1
                last_read_ok = True
            next_read = max(next_read + interval, time.monotonic())
            pause = min(next_read, ends) - time.monotonic()
            if pause > 0:
                time.sleep(pause)
    except (KeyboardInterrupt, ProbeStopped):
        interrupted = True
    finally:
        client.timeout = timeout
        client.close()
    finished = min(time.monotonic(), ends) if not interrupted else time.monotonic()
    if finished - last_success > longest_gap:
        longest_gap, longest_gap_start = finished - last_success, last_success
    return {
        "url": url,
        "interval_seconds": interval,
        "duration_seconds": round(finished - started, 6),
        "reads_ok": reads_ok,
        "failures": failures,
        "logins": logins,
        "longest_gap_seconds": round(longest_gap, 6),
        "longest_gap_started_at_seconds": round(longest_gap_start - started, 6),
        "recovered": last_read_ok,
        "last_error": last_error,
        "interrupted": interrupted,
    }


class WriterStopped(Exception):
    """SIGTERM to a writer: stop after the write in flight."""


def _write_version(seed, seq):
    return "%s#%d" % (seed, seq)


@contextlib.contextmanager
def _until_sigterm(client, log_path, close=True):
    """Run the body until SIGTERM or Ctrl-C, then close ``client`` (unless not to
    ``close``); yields ``record(**entry)``, which appends one JSON line to
    ``log_path`` at once."""
    def stop(signum, frame):
        raise WriterStopped()
    signal.signal(signal.SIGTERM, stop)
    try:
        with open(log_path, "a") as log:
            def record(**entry):
                log.write(json.dumps(entry, sort_keys=True) + "\n")
                log.flush()
            yield record
    except (KeyboardInterrupt, WriterStopped):
        pass
    finally:
        if close:
            client.close()


def writer(url, seed, blocks, log_path, interval=0.01, timeout=DEFAULT_PROBE_TIMEOUT,
           initiator_name=DEFAULT_INITIATOR_NAME, library=DEFAULT_LIBRARY):
    """Write numbered versions of ``blocks`` blocks round-robin until SIGTERM, logging in
    again after any failure, as a VM's disk keeps writing across a switchover.

    Write ``seq`` puts the pattern of version ``SEED#seq`` in block ``seq % blocks``.
    ``log_path`` gets one JSON line before each write is sent and one once the
    target acknowledged it (GOOD status on a write-through LUN: the data is on
    stable storage), so :func:`check_writes` knows what may be there.
    """
    client = IscsiClient(url, initiator_name=initiator_name, timeout=timeout, library=library)
    acknowledged = failures = logins = 0
    seq = 0

    with _until_sigterm(client, log_path) as record:
        while True:
            try:
                if not client.connected:
                    client.connect()
                    logins += 1
                    client.check_range(0, blocks)
                lba = seq % blocks
                record(seq=seq, lba=lba, sent=time.time())
                client.write_blocks(lba, pattern_block(_write_version(seed, seq), lba,
                                                       client.block_size))
                record(seq=seq, acked=time.time())
                acknowledged += 1
            except (BadUrl, BadRequest):
                raise
            except IscsiIoError:
                failures += 1
                client.close()
            seq += 1
            time.sleep(interval)
    return {"writes": seq, "acknowledged": acknowledged, "failures": failures,
            "logins": logins}


def _is_reset_attention(error):
    """The UNIT ATTENTION "reset occurred" a replayed command gets after a reconnect."""
    return (isinstance(error, ScsiCommandFailed) and error.sense_key == SENSE_UNIT_ATTENTION
            and (error.ascq or 0) >> 8 == ASC_RESET_OCCURRED)


def session_writer(url, seed, blocks, log_path, interval=0.002,
                   initiator_name=DEFAULT_INITIATOR_NAME, library=DEFAULT_LIBRARY):
    """Keep one long-lived session writing numbered versions of ``blocks`` blocks
    round-robin until SIGTERM, as dom0's initiator keeps its session to the SR.

    Unlike :func:`writer`, this client is patient: libiscsi reconnects the
    session by itself and replays what was queued, commands may take
    SESSION_COMMAND_TIMEOUT, and a write is retried (never skipped) after the
    UNIT ATTENTION that follows a reconnect.  Only when the session itself
    fails (libiscsi gave up, a command timed out) does it log in afresh.  The
    log has the lines :func:`check_writes` reads, one per write sent and one
    per acknowledgement, plus ``retried`` and ``login`` lines, all stamped
    with ``time.time()``: :func:`session_log` turns it into dark windows.
    """
    client = IscsiClient(url, initiator_name=initiator_name, timeout=SESSION_COMMAND_TIMEOUT,
                         library=library, auto_reconnect=True)
    acknowledged = retries = logins = 0
    seq = 0

    # libiscsi 1.19 sometimes crashed (SIGSEGV, heap corruption) logging out or
    # freeing a context after its own reconnects; the writer exits right after
    # stopping, and its exit closes the connection.
    with _until_sigterm(client, log_path, close=False) as record:
        while True:
            lba = seq % blocks
            record(seq=seq, lba=lba, sent=time.time())
            data = None
            for attempt in range(SESSION_RETRIES + 1):
                try:
                    if not client.connected:
                        client.connect()
                        logins += 1
                        record(login=time.time())
                        client.check_range(0, blocks)
                    if data is None:
                        data = pattern_block(_write_version(seed, seq), lba,
                                             client.block_size)
                    client.write_blocks(lba, data)
                except (BadUrl, BadRequest):
                    raise
                except IscsiIoError as exc:
                    retries += 1
                    record(seq=seq, retried=time.time(), error=str(exc),
                           reset=_is_reset_attention(exc))
                    if not isinstance(exc, ScsiCommandFailed) or attempt == SESSION_RETRIES:
                        client.close()  # the session failed: log in afresh
                    if not _is_reset_attention(exc):
                        time.sleep(interval)
                else:
                    record(seq=seq, acked=time.time())
                    acknowledged += 1
                    break
            seq += 1
            time.sleep(interval)
    return {"writes": seq, "acknowledged": acknowledged, "retries": retries,
            "logins": logins}


class SessionLog(object):
    """What a session writer's log shows: when each write was acknowledged, the retries
    (with whether each was the UNIT ATTENTION of a reconnect) and the logins.

    ``refresh()`` reads what the log gained since the last read, so a caller can
    follow a writer that is still running without parsing the whole log again.
    """

    def __init__(self, log_path):
        self.path = log_path
        self.offset = 0
        self.acks = []
        self.retries = []
        self.logins = []

    @classmethod
    def read(cls, log_path):
        return cls(log_path).refresh()

    def refresh(self):
        if not os.path.exists(self.path):
            return self
        with open(self.path) as log:
            log.seek(self.offset)
            for line in log:
                if not line.endswith("\n"):
                    break  # the writer is still writing this line
                self.offset += len(line.encode("utf-8"))
                entry = json.loads(line)
                if "acked" in entry:
                    self.acks.append(entry["acked"])
                elif "retried" in entry:
                    self.retries.append(entry)
                elif "login" in entry:
                    self.logins.append(entry["login"])
        # One writer, one clock: already in order, unless the wall clock stepped back.
        self.acks.sort()
        return self

    def first_ack_after(self, moment):
        """The first acknowledgement at or after ``moment``, or None."""
        index = bisect.bisect_left(self.acks, moment)
        return self.acks[index] if index < len(self.acks) else None

    def last_ack_before(self, moment):
        index = bisect.bisect_left(self.acks, moment)
        return self.acks[index - 1] if index > 0 else None

    def dark_window(self, since, until):
        """The longest gap between two consecutive acknowledgements that reaches into
        [``since``, ``until``]: (last ack before it, first ack after it), or None when
        no write was acknowledged after ``since`` (the client never recovered)."""
        start = bisect.bisect_left(self.acks, since)
        if start == len(self.acks):
            return None
        first = max(start - 1, 0)
        end = bisect.bisect_right(self.acks, until)
        pairs = list(zip(self.acks[first:end], self.acks[first + 1:end + 1]))
        if not pairs:
            return (self.acks[start], self.acks[start])
        return max(pairs, key=lambda pair: pair[1] - pair[0])

    def between(self, since, until):
        """The retries and logins logged in [``since``, ``until``]."""
        return {"retries": [entry for entry in self.retries
                            if since <= entry["retried"] <= until],
                "logins": [moment for moment in self.logins if since <= moment <= until]}


def check_writes(client, seed, log_path):
    """Read back every block the writer wrote: each must hold its latest acknowledged
    version, or a version sent after it that was never acknowledged (it may have
    landed).  ``lost`` lists the blocks where an acknowledged write is gone."""
    sent, acked = {}, set()
    with open(log_path) as log:
        for line in log:
            entry = json.loads(line)
            if "lba" in entry:
                sent[entry["seq"]] = entry["lba"]
            elif "acked" in entry:
                acked.add(entry["seq"])
    candidates = {}  # lba -> versions that may be there, newest last
    for seq in sorted(sent):
        lba = sent[seq]
        if seq in acked:
            candidates[lba] = [seq]
        elif lba in candidates:
            candidates[lba].append(seq)
    block_size = client.block_size
    lost = []
    for lba in sorted(candidates):
        data = client.read_blocks(lba, 1)
        if not any(data == pattern_block(_write_version(seed, seq), lba, block_size)
                   for seq in candidates[lba]):
            lost.append({"lba": lba, "acknowledged_seq": candidates[lba][0]})
    return {"ok": not lost, "acknowledged_writes": len(acked), "blocks_checked":
            len(candidates), "lost": lost[:MAX_REPORTED_MISMATCHES], "lost_count": len(lost)}


# -- command line -----------------------------------------------------------------

def _positive_float(text):
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be > 0: %r" % text)
    return value


def _block_count(text):
    value = int(text, 0)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1: %r" % text)
    return value


def _lba(text):
    value = int(text, 0)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0: %r" % text)
    return value


def _vpd_page(text):
    value = int(text, 0)
    if not 0 <= value <= 0xFF:
        raise argparse.ArgumentTypeError("a VPD page is 0x00..0xff: %r" % text)
    return value


def build_parser():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--timeout", type=_positive_float,
                        help="seconds each step (login, command) may take; default %s, "
                             "%s for probe" % (DEFAULT_TIMEOUT, DEFAULT_PROBE_TIMEOUT))
    common.add_argument("--initiator", default=DEFAULT_INITIATOR_NAME,
                        help="initiator IQN (default %(default)s)")
    common.add_argument("--library", default=DEFAULT_LIBRARY,
                        help="libiscsi shared object (default %(default)s)")

    parser = argparse.ArgumentParser(
        prog="python3 -m tests.lab.iscsi_io",
        description="Block I/O to one iSCSI LUN; prints one JSON object.")
    parser.add_argument("url", help="iscsi://ADDR[:PORT]/IQN/LUN")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    commands.add_parser("capacity", parents=[common], help="READ CAPACITY(16)")
    for name, text in (("write", "write the seeded pattern, then SYNCHRONIZE CACHE"),
                       ("verify", "compare blocks with the seeded pattern (exit 1 on mismatch)")):
        command = commands.add_parser(name, parents=[common], help=text)
        command.add_argument("--seed", required=True)
        command.add_argument("--blocks", type=_block_count, required=True)
        command.add_argument("--lba", type=_lba, default=0)
    read = commands.add_parser("read", parents=[common], help="READ(16): sha256 (and hex)")
    read.add_argument("--blocks", type=_block_count, required=True)
    read.add_argument("--lba", type=_lba, required=True)
    read.add_argument("--hex", action="store_true", help="also print the data in hex")
    vpd = commands.add_parser("vpd", parents=[common], help="raw INQUIRY VPD page")
    vpd.add_argument("--page", type=_vpd_page, required=True, help="e.g. 0x80 or 0x83")
    commands.add_parser("caching", parents=[common],
                        help="MODE SENSE(6) of the caching page: WCE, RCD, raw bytes")
    probe_command = commands.add_parser(
        "probe", parents=[common], help="read a block repeatedly; report the longest dark gap")
    probe_command.add_argument("--interval", type=_positive_float, default=0.05)
    probe_command.add_argument("--duration", type=_positive_float, required=True)
    probe_command.add_argument("--lba", type=_lba, default=0)
    write_loop = commands.add_parser(
        "writer", parents=[common], help="write numbered block versions until SIGTERM, "
                                         "logging what was sent and acknowledged")
    check = commands.add_parser(
        "check-writes", parents=[common], help="read back what a writer logged: every "
                                               "acknowledged write must be there (exit 1 if not)")
    session = commands.add_parser(
        "session-writer", parents=[common],
        help="one long-lived, auto-reconnecting session writing numbered block versions "
             "until SIGTERM, as dom0's initiator (--timeout is ignored: see "
             "SESSION_COMMAND_TIMEOUT)")
    for command in (write_loop, session, check):
        command.add_argument("--seed", required=True)
        command.add_argument("--log", required=True, help="the writer's log (JSON lines)")
    write_loop.add_argument("--blocks", type=_block_count, required=True)
    write_loop.add_argument("--interval", type=_positive_float, default=0.01)
    session.add_argument("--blocks", type=_block_count, required=True)
    session.add_argument("--interval", type=_positive_float, default=0.002,
                         help="pause between writes (default %(default)s s)")
    return parser


def _run_on_session(args, action):
    client = IscsiClient(args.url, initiator_name=args.initiator,
                         timeout=args.timeout or DEFAULT_TIMEOUT, library=args.library)
    with client:
        return action(client)


def run_command(args):
    """Run the parsed command; returns (report, exit code)."""
    if args.command == "probe":
        def stop(signum, frame):
            raise ProbeStopped()
        signal.signal(signal.SIGTERM, stop)
        report = probe(args.url, interval=args.interval, duration=args.duration,
                       timeout=args.timeout or DEFAULT_PROBE_TIMEOUT, lba=args.lba,
                       initiator_name=args.initiator, library=args.library)
        return report, 0
    if args.command == "writer":
        report = writer(args.url, args.seed, args.blocks, args.log, interval=args.interval,
                        timeout=args.timeout or DEFAULT_PROBE_TIMEOUT,
                        initiator_name=args.initiator, library=args.library)
        return report, 0
    if args.command == "session-writer":
        report = session_writer(args.url, args.seed, args.blocks, args.log,
                                interval=args.interval, initiator_name=args.initiator,
                                library=args.library)
        return report, 0
    if args.command == "check-writes":
        report = _run_on_session(args, lambda c: check_writes(c, args.seed, args.log))
        return report, 0 if report["ok"] else 1
    if args.command == "capacity":
        return _run_on_session(args, lambda c: c.capacity().as_dict()), 0
    if args.command == "write":
        return _run_on_session(
            args, lambda c: write_pattern(c, args.seed, args.lba, args.blocks)), 0
    if args.command == "verify":
        report = _run_on_session(
            args, lambda c: verify_pattern(c, args.seed, args.lba, args.blocks))
        return report, 0 if report["ok"] else 1
    if args.command == "read":
        return _run_on_session(args, lambda c: read_report(c, args.lba, args.blocks, args.hex)), 0
    if args.command == "caching":
        return _run_on_session(args, caching_report), 0
    return _run_on_session(args, lambda c: vpd_report(c, args.page)), 0


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        report, exit_code = run_command(args)
    except IscsiIoError as exc:
        sys.stderr.write("iscsi_io: error: %s\n" % exc)
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("iscsi_io: interrupted\n")
        return 2
    sys.stdout.write(json.dumps(report, sort_keys=True) + "\n")
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
