"""Sessions from iscsi_ha.xapi against a small XML-RPC server: calls work, and stay bounded."""

import socket
import threading
import time

import pytest
from six.moves import xmlrpc_server

from iscsi_ha import xapi


class Server(object):
    """XAPI's login and one slow call, on 127.0.0.1."""

    def __init__(self, delay):
        self.server = xmlrpc_server.SimpleXMLRPCServer(("127.0.0.1", 0), logRequests=False,
                                                       allow_none=True)
        self.server.register_instance(self)
        self.delay = delay
        self.thread = threading.Thread(target=self.server.serve_forever)
        self.thread.daemon = True
        self.thread.start()
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]

    def _dispatch(self, method, params):
        # Older XenAPI modules also ask for the API version right after the login.
        values = {"session.login_with_password": "OpaqueRef:session",
                  "pool.get_all": ["OpaqueRef:pool"], "pool.get_master": "OpaqueRef:host",
                  "host.get_API_version_major": "2", "host.get_API_version_minor": "20"}
        if method == "pool.get_all":
            time.sleep(self.delay)
        return {"Status": "Success", "Value": values[method]}

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server(request):
    made = []

    def make(delay=0.0):
        made.append(Server(delay))
        return made[-1]
    yield make
    for each in made:
        each.close()


def test_a_bounded_session_makes_calls(server):
    session = xapi.connect(server().url, timeout=5)
    session.xenapi.login_with_password("root", "", "2.0", "test")
    assert session.xenapi.pool.get_all() == ["OpaqueRef:pool"]


def test_a_call_that_gets_no_answer_ends_at_the_bound(server):
    session = xapi.connect(server(delay=1).url, timeout=5)
    session.xenapi.login_with_password("root", "", "2.0", "test")
    session.transport.timeout = 0.2
    with pytest.raises(socket.timeout):
        session.xenapi.pool.get_all()
