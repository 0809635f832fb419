"""The controller's XAPI side: its own host's xapi, the pool as XAPI records it, and
plugin calls to each host, every call bounded in time.

Only this module talks to XAPI. A call that gets no answer within its bound
counts as the host not answering (``ISCSI_HA_NO_ANSWER``); a connection to
this host's own xapi that breaks (xapi restarts after every master change) is
:class:`XapiLost`, and the daemon starts afresh, never assuming its old view.
"""

import json
import socket
import threading
import time

import six
from iscsi_ha import xapi
from six.moves import xmlrpc_client

from iscsi_ha_controller import answers
from iscsi_ha_controller.decide import HostView, Snapshot
from iscsi_ha_controller.srrepair import PbdView

MANUAL_KEY = "iscsi-ha.manual-mode"
CONTROLLER_KEY = "iscsi-ha.controller"
EVENT_CLASSES = ["pool", "host", "host_metrics"]
# event.from may hold its answer this long beyond the wait it was given.
EVENT_MARGIN = 15.0
_NOT_MASTER = ("HOST_IS_SLAVE", "HOST_STILL_BOOTING")


class NotMaster(Exception):
    """This host's xapi is not the pool master (``master_address`` says who is, if known)."""

    def __init__(self, message, master_address=None):
        Exception.__init__(self, message)
        self.master_address = master_address


class XapiLost(Exception):
    """This host's xapi did not answer, or broke the connection."""


class NoAnswer(XapiLost):
    """No answer within the call's bound (the connection may be fine)."""


class BadAnswer(XapiLost):
    """This host's xapi answered, but not as XAPI does (a record without a field the
    controller reads, or with one of another type): no view of the pool to act on."""


def _checked(problem):
    if problem:
        raise BadAnswer("this host's xapi answered what XAPI never does (%s); restart xapi "
                        "(xe-toolstack-restart) if it persists" % problem)


def _code(failure):
    return failure.details[0] if failure.details else ""


def _not_master(who, failure):
    """:class:`NotMaster` from xapi's refusal; HOST_IS_SLAVE names the master second."""
    return NotMaster("%s answers %s" % (who, " ".join(failure.details)),
                     failure.details[1] if len(failure.details) > 1 else None)


class PoolClient(object):
    """A session with this host's xapi while it is the pool master."""

    def __init__(self, config, originator="iscsi-ha-controller"):
        self.config = config
        self.originator = originator
        self.session = None
        self.url = None  # where the session logged in (the master's, after HOST_IS_SLAVE)
        self.pool_uuid = None

    def login(self, follow_master=False):
        """Log in at this host's xapi; :class:`NotMaster` on a slave, :class:`XapiLost` if no
        answer. With ``follow_master`` (the CLI), a slave's answer leads to its master."""
        try:
            secret = xapi.password(self.config)
        except (IOError, OSError) as exc:
            raise XapiLost("cannot read [xapi] password_file %s: %s"
                           % (self.config.xapi_password_file, exc))
        try:
            self.session = self._login(self.config.xapi_url, secret)
        except NotMaster as exc:
            if not (follow_master and exc.master_address):
                raise
            self.session = self._login(xapi.master_url(self.config.xapi_url,
                                                       exc.master_address), secret)

    def _login(self, url, secret):
        self.url = url
        session = xapi.connect(url, self.config.peer_timeout)
        try:
            session.xenapi.login_with_password(self.config.xapi_username, secret, "2.0",
                                               self.originator)
        except xapi.Failure as failure:
            if _code(failure) in _NOT_MASTER:
                raise _not_master("the xapi at %s" % url, failure)
            raise XapiLost("XAPI refused the login: %s" % " ".join(failure.details))
        except xapi.NO_ANSWER + (xmlrpc_client.Fault, xmlrpc_client.ProtocolError) as exc:
            raise XapiLost("no answer from the xapi at %s: %s" % (url, exc))
        return session

    def sibling(self):
        """A client with this one's session on a connection of its own, for a call made
        in another thread: one XML-RPC connection carries one call at a time. It
        never logs in again by itself (a lost session shows as :class:`XapiLost`)."""
        other = PoolClient(self.config, self.originator)
        other.url, other.pool_uuid = self.url, self.pool_uuid
        other.session = xapi.connect(self.url, self.config.peer_timeout)
        # The XenAPI module keeps the session reference there, and offers no other way
        # to share one login between connections.
        other.session._session = self.session._session
        return other

    def logout(self):
        if self.session is None:
            return
        try:
            self._call(self.config.peer_timeout, "session.logout")
        except (NotMaster, XapiLost):
            pass  # a restarted xapi has forgotten the session anyway
        self.session = None

    def _call(self, timeout, method, *args):
        """One XAPI call on this host's xapi, within ``timeout`` seconds."""
        self.session.transport.timeout = timeout
        function = self.session.xenapi
        for part in method.split("."):
            function = getattr(function, part)
        try:
            return function(*args)
        except xapi.Failure as failure:
            if _code(failure) in _NOT_MASTER + ("SESSION_INVALID",):
                raise _not_master("this host's xapi", failure)
            raise
        except xmlrpc_client.Fault as fault:
            # The XenAPI module's "Tried 3 times to get a valid session".
            raise XapiLost("XAPI session lost: %s" % fault.faultString)
        except socket.timeout:
            raise NoAnswer("no answer to %s within %g s" % (method, timeout))
        except xapi.NO_ANSWER + (xmlrpc_client.ProtocolError,) as exc:
            raise XapiLost("this host's xapi broke off %s: %s" % (method, exc))

    # -- reading the pool ------------------------------------------------------------

    def pool_record(self):
        # One round trip: a pool has exactly one record.
        pools = self._call(self.config.peer_timeout, "pool.get_all_records")
        _checked(answers.records_problem(pools, "pool.get_all_records")
                 or (len(pools) != 1 and "pool.get_all_records answered %d pools" % len(pools)))
        pool_ref, record = list(pools.items())[0]
        _checked(answers.pool_problem(record, pool_ref))
        self.pool_uuid = record["uuid"]
        return pool_ref, record

    def hosts(self, master_ref):
        """``HostView`` for each host (no status yet), the master first."""
        timeout = self.config.peer_timeout
        records = self._call(timeout, "host.get_all_records")
        _checked(answers.records_problem(records, "host.get_all_records")
                 or (master_ref not in records and "host.get_all_records does not list "
                     "the pool's master %s" % master_ref))
        metrics = self._call(timeout, "host_metrics.get_all_records")
        _checked(answers.records_problem(metrics, "host_metrics.get_all_records"))
        views = []
        for ref, record in sorted(records.items(), key=lambda item: item[0] != master_ref):
            _checked(answers.host_problem(record, ref))
            live = metrics.get(record["metrics"], {}).get("live")
            hostname = record.get("hostname")
            view = HostView(record["name_label"] or (
                hostname if isinstance(hostname, six.string_types) else "") or ref,
                            record["uuid"], record["address"],
                            live if isinstance(live, bool) else None)
            view.ref = ref
            views.append(view)
        return views

    def snapshot(self, own_uuid, took_over_from_address=None, fresh_master=False):
        """What the pool looks like now, each host's plugin status included.

        Raises :class:`NotMaster` when XAPI names another host as master.
        """
        pool_ref, pool = self.pool_record()
        views = self.hosts(pool["master"])
        master = views[0]
        if master.uuid != own_uuid:
            raise NotMaster("XAPI names %s as pool master" % master.name, master.address)
        took_over_from = [v.uuid for v in views[1:] if took_over_from_address
                          and v.address == took_over_from_address]
        read_statuses(self, views, took_over_from)
        return Snapshot(master, views[1:], manual_mode(pool.get("other_config", {})),
                        took_over_from[0] if took_over_from else None,
                        fresh_master, bool(self.config.controller_tickle),
                        bool(self.config.controller_overlap)), pool_ref

    # -- acting ----------------------------------------------------------------------

    def call_plugin(self, host, fn, args, timeout):
        """``(result, None)`` or ``(None, error description)`` of the plugin's ``fn``."""
        try:
            value = self._call(timeout, "host.call_plugin", host.ref, "iscsi-ha", fn,
                               dict((k, str(v)) for k, v in args.items()))
        except xapi.Failure as failure:
            return None, [str(part) for part in failure.details] or ["XAPI_FAILURE"]
        except NoAnswer:
            return None, ["ISCSI_HA_NO_ANSWER", "%s gave no answer to fn=%s within %g s"
                          % (host.name, fn, timeout)]
        try:
            return json.loads(value), None
        # RuntimeError: nested deeper than Python recurses (RecursionError on 3.x).
        except (TypeError, ValueError, RuntimeError):
            return None, ["ISCSI_HA_BAD_ANSWER", "fn=%s on %s answered %r" % (fn, host.name,
                                                                           value)]

    def call_plugins_beside(self, calls):
        """``call_plugin`` for each ``(host, fn, args, timeout)`` of ``calls``, all started
        at once, each in its own thread on its own connection (the first on this
        one's); their ``(result, error, seconds)`` in order, once every one answered. A
        lost session or mastership in any is raised after all of them ended."""
        outcomes = [None] * len(calls)
        callers = [self] + [self.sibling() for _ in calls[1:]]

        def run(index):
            started = time.time()
            try:
                result, error = callers[index].call_plugin(*calls[index])
                outcomes[index] = (result, error, time.time() - started)
            except (NotMaster, XapiLost) as exc:
                outcomes[index] = exc

        threads = [threading.Thread(target=run, args=(index,), name="call %s" % call[1])
                   for index, call in enumerate(calls)]
        for thread in threads:
            thread.daemon = True  # each call is bounded by its timeout
            thread.start()
        for thread in threads:
            thread.join()
        for outcome in outcomes:
            if isinstance(outcome, Exception):
                raise outcome
        return outcomes

    def pbds(self):
        """``(views, None)``: every PBD (:class:`srrepair.PbdView`) with its SR's name and
        type; or ``(None, error description)`` when XAPI refused to list them."""
        timeout = self.config.peer_timeout
        try:
            srs = self._call(timeout, "SR.get_all_records")
            records = self._call(timeout, "PBD.get_all_records")
        except xapi.Failure as failure:
            return None, [str(part) for part in failure.details] or ["XAPI_FAILURE"]
        except NoAnswer as exc:
            return None, ["ISCSI_HA_NO_ANSWER", str(exc)]
        views = []
        for ref, record in records.items():
            sr = srs.get(record.get("SR"), {})
            views.append(PbdView(ref, record.get("uuid"), record.get("host"),
                                 sr.get("name_label") or record.get("SR"), sr.get("uuid"),
                                 sr.get("type"), record.get("device_config"),
                                 record.get("currently_attached")))
        return views, None

    def plug_pbd(self, pbd, timeout):
        """``None``, or the error description of ``PBD.plug`` (xapi forwards it to the
        PBD's host, whose storage manager attaches the SR)."""
        try:
            self._call(timeout, "PBD.plug", pbd.ref)
        except xapi.Failure as failure:
            return [str(part) for part in failure.details] or ["XAPI_FAILURE"]
        except NoAnswer:
            return ["ISCSI_HA_NO_ANSWER", "PBD.plug of SR %s gave no answer within %g s"
                    % (pbd.sr_name, timeout)]
        return None

    def designate_new_master(self, host):
        """A planned master change to ``host`` (a :class:`HostView`); xapi then restarts."""
        self._call(self.config.action_timeout, "pool.designate_new_master", host.ref)

    def set_pool_key(self, pool_ref, key, value):
        """Replace ``other_config[key]`` of the pool (xapi refuses to add a key twice)."""
        timeout = self.config.peer_timeout
        try:
            self._call(timeout, "pool.remove_from_other_config", pool_ref, key)
        except xapi.Failure:
            pass  # not there: nothing to remove
        self._call(timeout, "pool.add_to_other_config", pool_ref, key, value)

    def remove_pool_key(self, pool_ref, key):
        self._call(self.config.peer_timeout, "pool.remove_from_other_config", pool_ref, key)

    def message(self, name, priority, cls, obj_uuid, body):
        self._call(self.config.peer_timeout, "message.create", name, str(priority), cls,
                   obj_uuid, body)

    def events(self, token, wait):
        """``(token, events)`` from ``event.from``, waiting at most ``wait`` seconds."""
        result = self._call(wait + EVENT_MARGIN, "event.from", EVENT_CLASSES, token,
                            float(wait))
        _checked(answers.events_problem(result))
        return result["token"], result["events"]


def read_statuses(client, views, lost_master=()):
    """Fill in each view's plugin ``status`` (or ``error``), each call within
    ``[timeouts] peer``; the master's own view comes first.

    The calls run side by side, each in its own thread on its own connection
    (:meth:`PoolClient.sibling`; the first on ``client``'s): a pass waits for the
    slowest host, not the sum. That matters on a takeover, where the dead host's
    call is the slow one (xapi retries it until CANNOT_CONTACT_HOST, or it runs
    out the bound) and the survivor's own status would otherwise wait behind it.
    So for the hosts in ``lost_master`` (uuids the mastership moved here from),
    the pass waits only ``[timeouts] takeover_peer`` once the master's own status
    says nobody answers ARP for the VIP: a host that still holds it (an old
    master that is merely slow while its xapi restarts after a planned change)
    gets the full bound, as it cannot count as gone anyway.

    A call that finds this host's xapi not master (HOST_STILL_BOOTING just after
    its restart, SESSION_INVALID) or lost ends the pass at once, as it would had
    the calls been made one after another: it says nothing about the host
    called, and the others' answers would be thrown away anyway. Their threads
    run out on their own; a status changes nothing, and an answer that comes
    after the pass stopped waiting is dropped.
    """
    calls = _Calls(time.time())
    callers = [client] + [client.sibling() for _ in views[1:]]
    for caller, view in zip(callers, views):
        thread = threading.Thread(target=calls.run, args=(caller, view),
                                  name=_thread_name("status " + view.name))
        thread.daemon = True  # bounded by its timeout; never holds up an exit
        thread.start()
    calls.wait(views, lost_master, client.config.takeover_peer_timeout)


def _thread_name(text):
    """2.7's threading makes a name str(): a host named in UTF-8 must be bytes there."""
    return text.encode("utf-8") if six.PY2 and isinstance(text, six.text_type) else text


def _nobody_holds_vip(status):
    try:
        return status["vip"]["answered_elsewhere"] is False and not status["vip"]["local"]
    except (KeyError, TypeError):
        return False


class _Calls(object):
    """Status calls in threads; :meth:`wait` until they answered, one raised, or the
    lost masters' shorter wait ran out."""

    def __init__(self, started):
        self.started = started
        self.answers = {}
        self.raised = None
        self.closed = False
        self.changed = threading.Condition()

    def run(self, caller, view):
        outcome = (None, ["ISCSI_HA_NO_ANSWER", "fn=status on %s failed" % view.name])
        try:
            status, error = caller.call_plugin(view, "status", {}, caller.config.peer_timeout)
            problem = answers.status_problem(status) if error is None else None
            if problem:
                # Nothing may be decided from it: as if the host gave no status.
                status, error = None, ["ISCSI_HA_BAD_ANSWER", (
                    "fn=status on %s answered what iscsi-ha's plugin never does (%s); check "
                    "that the same iscsi-ha version is installed there (fn=version)"
                    % (view.name, problem))]
            outcome = (status, list(error or []))
        except (NotMaster, XapiLost) as exc:
            outcome = exc
        finally:
            with self.changed:
                if not self.closed:
                    if isinstance(outcome, Exception):
                        self.raised = self.raised or outcome
                    else:
                        self.answers[id(view)] = outcome
                    self.changed.notify_all()

    def wait(self, views, lost_master, short):
        with self.changed:
            while self.raised is None:
                pending = [v for v in views if id(v) not in self.answers]
                if not pending:
                    break
                master = self.answers.get(id(views[0]))
                if (master is None or not _nobody_holds_vip(master[0])
                        or any(v.uuid not in lost_master for v in pending)):
                    # No timeout: each call is bounded, and on 2.7 a timed wait polls.
                    self.changed.wait()
                    continue
                left = self.started + short - time.time()
                if left <= 0:
                    break
                self.changed.wait(left)
            self.closed = True
        if self.raised is not None:
            raise self.raised
        for view in views:
            view.status, view.error = self.answers.get(id(view), (None, [
                "ISCSI_HA_NO_ANSWER", "%s gave no answer to fn=status within %g s"
                % (view.name, short)]))


def manual_mode(other_config):
    """The pool's manual-mode record, or None when manual mode is off."""
    if MANUAL_KEY not in other_config:
        return None
    try:
        record = json.loads(other_config[MANUAL_KEY])
    except ValueError:
        record = None
    return record if isinstance(record, dict) else {"reason": other_config[MANUAL_KEY]}
