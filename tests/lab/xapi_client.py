"""Reaching the pool master through XAPI as a real client must, for the lab (Python 3 only).

Owns: :class:`MasterSession`, a session (the official ``XenAPI`` module) with
whichever host runs as pool master.  It logs in at a host it knows and follows
``HOST_IS_SLAVE`` to the address named there; while xapi restarts (a master
change restarts it on both hosts) it waits and tries again: connections
refused or cut, ``HOST_STILL_BOOTING``, and a session the restarted xapi no
longer knows, which the module answers by logging in again at the same host
(``HOST_IS_SLAVE`` when that host is a slave now).  Everything else XAPI says
is an answer, for the caller.  Also :func:`wait_for_slave`, for a host that
boots and must join the pool before it can serve a call.
"""

import http.client
import time
import xmlrpc.client

import XenAPI

RETRY_SECONDS = 0.1
# Codes meaning "not the master now", as opposed to an answer to the call.
NOT_HERE_NOW = ("HOST_IS_SLAVE", "HOST_STILL_BOOTING")


class XapiUnreachable(Exception):
    """No host answered as master before the deadline; the message says what was seen."""


def _not_reached(exc):
    """Whether ``exc`` means that the call did not reach a master (so trying again is right)."""
    if isinstance(exc, XenAPI.Failure):
        return bool(exc.details) and exc.details[0] in NOT_HERE_NOW
    if isinstance(exc, xmlrpc.client.Fault):
        # The XenAPI module's "Tried 3 times to get a valid session" (SESSION_INVALID).
        return exc.faultCode == 500
    return isinstance(exc, (OSError, http.client.HTTPException))


class MasterSession(object):
    """A logged-in session with the pool master; ``retrying(call)`` survives xapi restarts.

    ``urls`` maps each host's address to the URL of its xapi; ``first`` is the
    address to try first; with ``only``, nothing but that address will do (a
    client waiting for a new master).  ``timeout`` bounds every wait.
    """

    def __init__(self, urls, username, password, originator, first, only=None, timeout=60.0):
        self._urls = urls
        self._credentials = (username, password, "2.0", originator)
        self._address = only or first
        self._only = only
        self._timeout = timeout
        self.session = None
        self._connect(time.monotonic() + timeout)

    @property
    def xenapi(self):
        return self.session.xenapi

    def _connect(self, deadline):
        seen, followed = None, False
        while True:
            session = XenAPI.Session(self._urls[self._address])
            try:
                session.xenapi.login_with_password(*self._credentials)
                self.session = session
                return
            except Exception as exc:  # pylint: disable=broad-except
                if not _not_reached(exc):
                    raise
                seen = exc
                if not self._only:
                    slave_of = (exc.details[1] if isinstance(exc, XenAPI.Failure)
                                and exc.details[0] == "HOST_IS_SLAVE" else None)
                    self._address = (slave_of if slave_of in self._urls
                                     else self._next_address())
                    # Follow HOST_IS_SLAVE at once, but only once between waits: during
                    # a master change each host may name the other.
                    if slave_of in self._urls and not followed:
                        followed = True
                        continue
            followed = False
            if time.monotonic() > deadline:
                raise XapiUnreachable("no XAPI answered as master at %s within %.0f s (last: %s)"
                                      % (self._only or ", ".join(sorted(self._urls)),
                                         self._timeout, _describe(seen)))
            time.sleep(RETRY_SECONDS)

    def _next_address(self):
        addresses = sorted(self._urls)
        return addresses[(addresses.index(self._address) + 1) % len(addresses)]

    def retrying(self, call):
        """``call(xenapi)``, again with a new session whenever it did not reach a master."""
        deadline = time.monotonic() + self._timeout
        while True:
            try:
                return call(self.session.xenapi)
            except Exception as exc:  # pylint: disable=broad-except
                if not _not_reached(exc) or time.monotonic() > deadline:
                    raise
            time.sleep(RETRY_SECONDS)
            self._connect(deadline)

    def logout(self):
        """Log out if the session's xapi still knows it; a restarted one has forgotten it."""
        try:
            self.session.xenapi.session.logout()
        except Exception as exc:  # pylint: disable=broad-except
            if not _not_reached(exc):
                raise


def _describe(exc):
    if isinstance(exc, XenAPI.Failure):
        return " ".join(exc.details)
    return "%s: %s" % (type(exc).__name__, exc)


def wait_for_slave(url, master_address, username, password, timeout=60.0):
    """Wait until the xapi at ``url`` answers logins with HOST_IS_SLAVE [master_address]."""
    deadline = time.monotonic() + timeout
    seen = None
    while True:
        try:
            XenAPI.Session(url).xenapi.login_with_password(username, password, "2.0",
                                                           "iscsi-ha-lab")
            seen = "it answered as master"
        except XenAPI.Failure as failure:
            if failure.details == ["HOST_IS_SLAVE", master_address]:
                return
            seen = " ".join(failure.details)
        except (OSError, http.client.HTTPException) as exc:
            seen = "%s: %s" % (type(exc).__name__, exc)
        if time.monotonic() > deadline:
            raise XapiUnreachable("%s did not become a slave of %s within %.0f s (last: %s)"
                                  % (url, master_address, timeout, seen))
        time.sleep(RETRY_SECONDS)
