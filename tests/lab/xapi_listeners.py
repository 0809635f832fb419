"""The XAPI simulator's XML-RPC listeners, on loopback or in a namespace (Python 3 only).

Owns: :class:`Listener`, one endpoint that opens (the first time on a free port
unless given one), closes (new connections are refused and open ones cut, as
when a host dies) and opens again at the same URL; the HTTP server behind it
(keep-alive, one thread per connection, every connection tracked so that it can
be cut); creating a listening socket inside a network namespace
(:func:`in_netns`, setns on one thread); and the wire format: a request body
is decoded as an XML-RPC methodCall, a malformed one gets an XML-RPC fault, a
reply struct is encoded as a methodResponse.

What a call means is not decided here: a listener hands ``(method, params)`` to
``simulator.answer(listener, method, params)``, which returns the reply struct,
or None to drop the connection without a reply.
"""

import ctypes
import http.server
import os
import socket
import socketserver
import sys
import threading
import xml.parsers.expat
import xmlrpc.client

# How often a listener's accept loop looks for a shutdown request; it bounds how
# long lab.fail_host holds the state lock.
ACCEPT_POLL_SECONDS = 0.05
# What xmlrpc.client.loads raises on text that is not the XML-RPC it expects.
MALFORMED_XMLRPC = (xml.parsers.expat.ExpatError, xmlrpc.client.ResponseError, ValueError)

_CLONE_NEWNET = 0x40000000
# Lets a namespace listener bind before the lab has put the address on an interface.
_IP_FREEBIND = 15
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd):
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, "setns: %s" % os.strerror(error))


def in_netns(netns, make):
    """Call ``make()`` with this thread in network namespace ``netns``.

    A socket keeps the namespace it was created in, so a listener made here
    accepts connections inside ``netns`` whichever thread serves it later.
    setns(CLONE_NEWNET) moves only the calling thread.
    """
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(os.path.join("/var/run/netns", netns), os.O_RDONLY)
        try:
            _setns(target)
            try:
                return make()
            finally:
                _setns(home)
        finally:
            os.close(target)
    finally:
        os.close(home)


class _HttpServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    # Handler threads may sit in keep-alive reads; closing must not wait for them.
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address, listener, freebind):
        self.listener = listener
        self.freebind = freebind
        self.connections = set()
        self.connections_lock = threading.Lock()
        socketserver.TCPServer.__init__(self, address, _RequestHandler)

    def server_bind(self):
        # Not HTTPServer.server_bind: it resolves the address's name (DNS traffic).
        if self.freebind:
            self.socket.setsockopt(socket.SOL_IP, _IP_FREEBIND, 1)
        socketserver.TCPServer.server_bind(self)

    def process_request(self, request, client_address):
        with self.connections_lock:
            self.connections.add(request)
        socketserver.ThreadingMixIn.process_request(self, request, client_address)

    def shutdown_request(self, request):
        with self.connections_lock:
            self.connections.discard(request)
        socketserver.TCPServer.shutdown_request(self, request)

    def drop_connections(self):
        """Cut every open connection, as a dying host would."""
        with self.connections_lock:
            connections = list(self.connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request, client_address):
        # Clients that hang up and hosts the lab kills are normal here.
        if not isinstance(sys.exc_info()[1], OSError):
            socketserver.TCPServer.handle_error(self, request, client_address)


class _RequestHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Buffered, so headers and body leave in one send: two small sends meet the
    # client's delayed ACK (Nagle) and cost ~40 ms per call.
    wbufsize = -1

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        reply = self.server.listener.answer(body)
        if reply is None:
            self.close_connection = True
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
        pass  # the audit log records every call


class Listener(object):
    """One XML-RPC endpoint; it can close (connections refused) and open again.

    ``kind`` is "host" (answers as ``host_name``), "pool" (answers as the current
    master) or "control" (lab calls only).  The simulator takes lab calls only on
    a ``loopback`` listener.
    """

    def __init__(self, simulator, name, kind, address, port=0, host_name=None, netns=None):
        self.simulator = simulator
        self.name = name
        self.kind = kind
        self.address = address
        self.port = port
        self.host_name = host_name
        self.netns = netns
        self._server = None

    @property
    def loopback(self):
        return self.netns is None

    @property
    def is_open(self):
        return self._server is not None

    @property
    def url(self):
        return "http://%s:%d/" % (self.address, self.port)

    def open(self):
        if self._server is not None:
            return

        def make():
            return _HttpServer((self.address, self.port), self, freebind=not self.loopback)

        server = in_netns(self.netns, make) if self.netns else make()
        # The first open picks a free port; reopening keeps the URL the lab handed out.
        self.port = server.server_address[1]
        thread = threading.Thread(target=server.serve_forever, args=(ACCEPT_POLL_SECONDS,),
                                  name="xapi-sim " + self.name, daemon=True)
        thread.start()
        self._server = server

    def close(self):
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.drop_connections()

    def answer(self, body):
        """The HTTP body replying to one XML-RPC request, or None to drop the connection."""
        try:
            params, method = xmlrpc.client.loads(body)
        except MALFORMED_XMLRPC as exc:
            fault = xmlrpc.client.Fault(400, "malformed XML-RPC request: %s" % exc)
            return xmlrpc.client.dumps(fault, methodresponse=True).encode("utf-8")
        reply = self.simulator.answer(self, method, params)
        if reply is None:
            return None
        return xmlrpc.client.dumps((reply,), methodresponse=True, allow_none=True).encode("utf-8")
