"""Sessions with XAPI for iscsi-ha's own tools, such as the fence-peer handler.

``[xapi] url = local`` (dom0's default) is the local xapi's unix socket, where
root needs no password; any other value is an http(s) URL. A slave's xapi
answers a login with HOST_IS_SLAVE and the master's address: the session
follows it there with the same credentials.
"""

import contextlib
import socket

import XenAPI
from six.moves import http_client, xmlrpc_client

Failure = XenAPI.Failure
LOCAL_SOCKET = "/var/lib/xcp/xapi"
# What a call that did not get an answer raises, on every Python.
NO_ANSWER = (IOError, OSError, socket.error, socket.timeout, http_client.HTTPException)


class _Bounded(object):
    """Mixed into an xmlrpc transport (after it: 2.7's Transport is an old-style class,
    whose __init__ an earlier new-style base would hide): every request waits at most
    ``timeout`` seconds.

    The XenAPI module gives no way to bound a call, and a call to a dead host
    may hang for hours, so every connection (new or kept alive) gets the
    transport's current ``timeout``; callers change it between calls.
    """

    timeout = None

    def _bound(self, connection):
        connection.timeout = self.timeout
        if getattr(connection, "sock", None) is not None:
            connection.sock.settimeout(self.timeout)
        return connection


class _HttpTransport(xmlrpc_client.Transport, _Bounded):
    def make_connection(self, host):
        return self._bound(xmlrpc_client.Transport.make_connection(self, host))


class _HttpsTransport(xmlrpc_client.SafeTransport, _Bounded):
    def make_connection(self, host):
        return self._bound(xmlrpc_client.SafeTransport.make_connection(self, host))


class _UnixConnection(http_client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(LOCAL_SOCKET)


class _UnixTransport(xmlrpc_client.Transport, _Bounded):
    """xapi's own unix socket, as ``XenAPI.xapi_local()`` reaches it, but bounded."""

    def make_connection(self, host):
        if not (self._connection and self._connection[0] == host):
            self._connection = host, _UnixConnection(host)
        return self._bound(self._connection[1])


def connect(url, timeout=None):
    """A ``XenAPI.Session`` for ``url`` (``local`` or http(s)) whose calls are bounded.

    Set ``session.transport.timeout`` to change the bound for the next calls.
    """
    if url == "local":
        transport, uri = _UnixTransport(), "http://_var_lib_xcp_xapi/"
    else:
        transport = _HttpsTransport() if url.startswith("https:") else _HttpTransport()
        uri = url
    transport.timeout = timeout
    return XenAPI.Session(uri, transport=transport)


class XapiUnavailable(Exception):
    """XAPI could not be reached or refused the login."""


class NoSinglePeer(Exception):
    """The pool does not have exactly one host besides this one."""


def password(config):
    """The XAPI password from ``[xapi] password_file`` (first line), or empty."""
    if not config.xapi_password_file:
        return ""
    with open(config.xapi_password_file) as handle:
        return handle.readline().strip()


def master_url(url, master_address):
    """Where to log in instead after HOST_IS_SLAVE: same scheme and port, the master's host."""
    if url == "local":
        return "https://%s" % master_address
    scheme, _, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    port = ""
    if authority.rsplit(":", 1)[-1].isdigit() and ":" in authority:
        port = ":" + authority.rsplit(":", 1)[1]
    return "%s://%s%s%s%s" % (scheme, master_address, port, slash, path)


@contextlib.contextmanager
def session(config):
    """A logged-in session with the pool master; logged out when the block ends."""
    username = config.xapi_username
    try:
        secret = password(config)
        current = connect(config.xapi_url)
        try:
            current.xenapi.login_with_password(username, secret, "2.0", "iscsi-ha")
        except Failure as failure:
            if not failure.details or failure.details[0] != "HOST_IS_SLAVE":
                raise
            current = connect(master_url(config.xapi_url, failure.details[1]))
            current.xenapi.login_with_password(username, secret, "2.0", "iscsi-ha")
    except NO_ANSWER + (Failure,) as exc:
        raise XapiUnavailable("cannot log in to XAPI (%s): %s" % (config.xapi_url, exc))
    try:
        yield current
    finally:
        try:
            current.xenapi.session.logout()
        except Exception:  # pylint: disable=broad-except
            pass  # the answer is what mattered; a failed logout changes nothing


def other_host(session_, own_uuid):
    """The ref of the pool's one other host; iscsi-ha pools have exactly two."""
    records = session_.xenapi.host.get_all_records()
    others = [ref for ref, record in records.items() if record.get("uuid") != own_uuid]
    if own_uuid is None or len(others) != 1:
        raise NoSinglePeer("cannot tell the peer host: this host's uuid is %s and the "
                              "pool has %d other host(s)" % (own_uuid, len(others)))
    return others[0]
