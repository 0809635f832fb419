"""Sessions with XAPI for iscsi-ha's own tools, such as the fence-peer handler.

``[xapi] url = local`` (dom0's default) is the local xapi's unix socket, where
root needs no password; any other value is an http(s) URL. A slave's xapi
answers a login with HOST_IS_SLAVE and the master's address: the session
follows it there with the same credentials.
"""

import contextlib
import socket

import XenAPI

Failure = XenAPI.Failure


class XapiUnavailable(Exception):
    """XAPI could not be reached or refused the login."""


class NoSinglePeer(Exception):
    """The pool does not have exactly one host besides this one."""


def _password(config):
    if not config.xapi_password_file:
        return ""
    with open(config.xapi_password_file) as handle:
        return handle.read().strip()


def _connect(url):
    return XenAPI.xapi_local() if url == "local" else XenAPI.Session(url)


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
        password = _password(config)
        current = _connect(config.xapi_url)
        try:
            current.xenapi.login_with_password(username, password, "2.0", "iscsi-ha")
        except Failure as failure:
            if not failure.details or failure.details[0] != "HOST_IS_SLAVE":
                raise
            current = _connect(master_url(config.xapi_url, failure.details[1]))
            current.xenapi.login_with_password(username, password, "2.0", "iscsi-ha")
    except (IOError, OSError, socket.error, Failure) as exc:
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
