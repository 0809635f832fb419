"""A small SMTP server for tests on a real socket on 127.0.0.1 (stdlib only; 2.7, 3.6, 3.11).

It speaks what smtplib needs of RFC 5321: EHLO/HELO, STARTTLS (RFC 3207), AUTH PLAIN and
LOGIN (RFC 4954), MAIL, RCPT, DATA, RSET, NOOP, QUIT. No kinder than a real server: when it
offers STARTTLS it offers AUTH only after it, when it has credentials it refuses MAIL before
a successful AUTH, and it refuses wrong credentials. It records every accepted message and
every AUTH attempt.

    with SmtpServer(tls="starttls", credentials=("alerts", "secret")) as server:
        ...  # send to ("localhost", server.port)
        server.wait_for(lambda: server.messages)
"""

import base64
import email
import email.header
import os
import select
import shutil
import socket
import ssl
import tempfile
import threading
import time

# Self-signed for "localhost", valid 2000-2100, made for these tests only. A client trusts
# it only when told to (SSL_CERT_FILE=certificate_file(...)).
CERTIFICATE = """-----BEGIN CERTIFICATE-----
MIIDNTCCAh2gAwIBAgIBATANBgkqhkiG9w0BAQsFADAUMRIwEAYDVQQDDAlsb2Nh
bGhvc3QwIBcNMDAwMTAxMDAwMDAwWhgPMjEwMDAxMDEwMDAwMDBaMBQxEjAQBgNV
BAMMCWxvY2FsaG9zdDCCASIwDQYJKoZIhvcNAQEBBQADggEPADCCAQoCggEBAMFk
9aWXeedmYqmAWqOJrJp+Koh5GTYsoPxLAAV9Ue4N3a9vTGFvQr5oPDVA5JQ4zXm+
GoQtoR+QGn08fy+pLPhKogOcLrdKuS72aJbKI+Cws+oxsLIIJyD+KkSPbRrl7UkH
stVTX8vO/cVz24h9fXHnC+ZsUIZ6gvKCSdfJQXqDzewZ32tDP5MtURa6/Y3KCuhS
3UxGKu1JHy/xeRy0AJLdtHOQo8I7OyjrjkvqOP2xxRTuw9zH4Y06RdLta/Hpjlmk
WKrMDdzZhworMoV80i46w99iEY5t9Ur1da56wUYpWsg3BQCyDLWL40z5lUMKaAdA
N7RKvnTBGLVqJqKk2M0CAwEAAaOBjzCBjDAUBgNVHREEDTALgglsb2NhbGhvc3Qw
DwYDVR0TAQH/BAUwAwEB/zAOBgNVHQ8BAf8EBAMCAqQwEwYDVR0lBAwwCgYIKwYB
BQUHAwEwHQYDVR0OBBYEFONud9SJVHISlkiLdf2sfNZM/n2oMB8GA1UdIwQYMBaA
FONud9SJVHISlkiLdf2sfNZM/n2oMA0GCSqGSIb3DQEBCwUAA4IBAQBoBb58gq4R
6lxk0JRhttWpxzeh3tz1QMXtbJcGOOSREYsDiSom7D1nqj07vsmEqJYBX2aYCHsB
ibk7vjFnHbB7XhMkL6PFjLqSxOn52ruOgjXrUa8I48zN0YgYAwiqZy0QvkE0I6Xc
i2z3qjZCFMCDMvdHOInGRIKO4kDII6pTq12UK6Dz1oXCNdeRren3mrtLJ2ScNtwh
IVMlZiFKvbPWC6nFNxYLijO0JrnY/N6l91vrpQtfIB1QYANIMA2n8FMqLBVPv4Cy
/3+A73E+u+gMswkB5l/ws+CAngYnixeAf9NfI4xXOkBa0IHZOzgeg7SoHdg7h9D+
BEjpAur8haug
-----END CERTIFICATE-----
"""
KEY = """-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDBZPWll3nnZmKp
gFqjiayafiqIeRk2LKD8SwAFfVHuDd2vb0xhb0K+aDw1QOSUOM15vhqELaEfkBp9
PH8vqSz4SqIDnC63Srku9miWyiPgsLPqMbCyCCcg/ipEj20a5e1JB7LVU1/Lzv3F
c9uIfX1x5wvmbFCGeoLygknXyUF6g83sGd9rQz+TLVEWuv2NygroUt1MRirtSR8v
8XkctACS3bRzkKPCOzso645L6jj9scUU7sPcx+GNOkXS7Wvx6Y5ZpFiqzA3c2YcK
KzKFfNIuOsPfYhGObfVK9XWuesFGKVrINwUAsgy1i+NM+ZVDCmgHQDe0Sr50wRi1
aiaipNjNAgMBAAECggEAVNC4QuVJ20g14Oyf07Ufc6n9cVjay72K5NrnqYCqm+KM
5NHFB75J4UPJk/lfxfmbc9cBvhJc5YDHfUE47mgdhs8EetzWSCCHUqdSez8vuO0G
GqGsQof80SVm2CamzPMlu6+aqKAmFTY0aZJEJ3oRuBCCUY4TSscUAtNNG0vyYY4E
x6snudeS06Tx6zdFxCd5vF5DzhMf+w/ywEmApJlWSWcSsqH9ihLfqGJ/6aV5QSO2
Bvy7wZMx635BHFIkspqdGAt6RlYb2q45ZuNMN8Uos/EdWKHEyMlWDspq6Mo8+VuI
pIewSCdpO0sjkSd8ITaNOGG34cqGAsaiuXEtWPqB6QKBgQDxF5Rdqq4iwefAv8t5
BoY9BRWz0thF3oIzyOlaVuhabHVCJFrJLsjVX6iUiug+bXIa9b4+1dENkq9yI/da
vnLQkhSkSq9MTVS2WlbQUWwxGTiVjUf0qOa1WM+RVf+Mar6/7KyP0olL356zqysC
zkp4KTTExmQjSwF7Wp8xCyuY9wKBgQDNWlaXUNNrNFpyAGLjUebjo7cl+tZRYYEX
eKo75aWAifBGVINAqln+y1OcZCseyn2gulJlA2kpGp+FXpe3jlrv2Qycb3/5+Cxe
okj20CvqYBzNBlkyO371e9NUD+XyrteWvfec0Sy2n0VbIWEBtsLWNRd4hvO8jVbA
CYKOwIkPWwKBgA7J13v3YD8ZjdGw8hY2ZD2R9kbVhBalE2+Bv26fLhl91aN8/2Sf
zgnomDqkWqKZrAojUMwh6XTfrotd0WprjDdm/oUlX6Naivu0hua4V96bIXFq/SLw
yVYOYI0VrVs7oP+80MjxrSJOUTnMIhNF/CNqw6XeVX4kt66NXH5xpPb5AoGBAIkv
nsV7w6HM2ddrFqUSZBMTnhkLV/4KC3morOFS65vRiukRMJYUuAaVwwepi30IfaDQ
mJbPDoPdO1CX/vcrbOjqsZgYjQBroQifler86zmqd9MoOJJsWMaasHVqIY5c673S
rwbeXuapxGW7CNliRQthcIqebVo7egbU05mWWnodAoGALBjCBAwB139pDk9HUN+A
yZ/FNV42Or38CCeqSDe2m9yq9/bSoFlMVqoTKLpUesX7jQTJCdtg08AU3FyT+bHO
wY2L0xrY/lx+HckKTJ1w7FSKiQ6QEyxvTg5hadudc8b0IU+/mdmAbCQkvAGBzYld
WVL8I8xJwT2I++jFhCvQbdk=
-----END PRIVATE KEY-----
"""
WAIT = 30.0  # seconds: a hang guard for tests, not a measurement


class Message(object):
    """One accepted message: the envelope and the parsed e-mail."""

    def __init__(self, mail_from, rcpt_to, data):
        self.mail_from = mail_from
        self.rcpt_to = rcpt_to
        self.email = email.message_from_string(data)

    @property
    def subject(self):
        parts = []
        for text, charset in email.header.decode_header(self.email["Subject"]):
            if isinstance(text, bytes):
                text = text.decode(charset or "ascii")
            parts.append(text)
        return "".join(parts)

    @property
    def body(self):
        payload = self.email.get_payload(decode=True)
        return payload.decode(self.email.get_content_charset() or "ascii")


def certificate_file(directory):
    """Write :data:`CERTIFICATE` into ``directory``; its path, for SSL_CERT_FILE."""
    path = os.path.join(directory, "test-smtp-ca.pem")
    with open(path, "w") as handle:
        handle.write(CERTIFICATE)
    return path


class SmtpServer(object):
    """``tls``: None, "starttls" or "tls" (implicit, as on port 465). ``credentials``:
    the (user, password) it accepts; None: no AUTH. ``hold``: a threading.Event each
    connection waits for before its greeting (a server that does not answer).
    ``echo_credentials``: a refusal quotes what the client sent, as a careless server might."""

    def __init__(self, tls=None, credentials=None, hold=None, echo_credentials=False):
        self.tls = tls
        self.credentials = credentials
        self.hold = hold
        self.echo_credentials = echo_credentials
        self.messages = []
        self.auth = []  # (mechanism, user, password) as the client sent them
        self.errors = []  # what broke a connection, e.g. a refused TLS handshake
        self.accepted = []  # the clients' addresses, one per connection
        self.live_sockets = {}  # each open connection's current socket
        self._changed = threading.Condition()
        self._stopping = False
        self._directory = tempfile.mkdtemp(prefix="smtp-server-")
        self.tls_context = None
        if tls:
            for name, text in (("cert.pem", CERTIFICATE), ("key.pem", KEY)):
                with open(os.path.join(self._directory, name), "w") as handle:
                    handle.write(text)
            self.tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self.tls_context.load_cert_chain(os.path.join(self._directory, "cert.pem"),
                                          os.path.join(self._directory, "key.pem"))
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port = self._listener.getsockname()[1]
        self._threads = [threading.Thread(target=self._accept)]
        self._threads[0].daemon = True
        self._threads[0].start()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.stop()

    def stop(self):
        self._stopping = True
        for sock in list(self.live_sockets.values()):
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes a session blocked reading
            except (socket.error, ValueError):
                pass
        for thread in list(self._threads):
            thread.join(WAIT)
        self._listener.close()
        shutil.rmtree(self._directory, ignore_errors=True)

    def wait_for(self, condition, timeout=WAIT):
        """Wait until ``condition()`` is true (looked at on every change); its last value."""
        deadline = time.time() + timeout
        with self._changed:
            while True:
                result = condition()
                left = deadline - time.time()
                if result or left <= 0:
                    return result
                self._changed.wait(left)

    def record(self, what, value):
        with self._changed:
            what.append(value)
            self._changed.notify_all()

    def _accept(self):
        while not self._stopping:
            if not select.select([self._listener], [], [], 0.05)[0]:
                continue
            sock, address = self._listener.accept()
            self.record(self.accepted, address)
            thread = threading.Thread(target=self._serve, args=(sock,))
            thread.daemon = True
            self._threads.append(thread)
            thread.start()

    def _serve(self, sock):
        key = threading.current_thread().name
        self.live_sockets[key] = sock
        try:
            sock.settimeout(WAIT)
            while self.hold is not None and not self.hold.wait(0.05):
                if self._stopping:
                    return
            if self.tls == "tls":
                sock = self.tls_context.wrap_socket(sock, server_side=True)
                self.live_sockets[key] = sock
            session = _Session(self, sock, key, encrypted=self.tls == "tls")
            session.run()
        except (socket.error, ssl.SSLError, ValueError) as exc:
            self.record(self.errors, "%s: %s" % (type(exc).__name__, exc))
        finally:
            self.live_sockets[key].close()
            del self.live_sockets[key]


class _Session(object):
    """One client's conversation."""

    def __init__(self, server, sock, key, encrypted):
        self.server = server
        self.sock = sock
        self.key = key
        self.reader = sock.makefile("rb")
        self.encrypted = encrypted
        self.authenticated = False
        self.mail_from = None
        self.rcpt_to = []

    def send(self, line):
        self.sock.sendall((line + "\r\n").encode("utf-8"))

    def readline(self):
        raw = self.reader.readline()
        if not raw:
            raise socket.error("the client hung up")
        return raw.decode("utf-8", "replace").rstrip("\r\n")

    def run(self):
        server = self.server
        self.send("220 localhost ESMTP test server")
        while True:
            verb, _, argument = self.readline().partition(" ")
            verb = verb.upper()
            if verb in ("EHLO", "HELO"):
                self.reset()
                if verb == "HELO":
                    self.send("250 localhost")
                    continue
                offers = ["8BITMIME"]
                if server.tls == "starttls" and not self.encrypted:
                    offers.append("STARTTLS")
                if self.auth_offered():
                    offers.append("AUTH PLAIN LOGIN")
                self.send("250-localhost")
                for offer in offers[:-1]:
                    self.send("250-" + offer)
                self.send("250 " + offers[-1])
            elif verb == "STARTTLS" and server.tls == "starttls" and not self.encrypted:
                self.send("220 2.0.0 Ready to start TLS")
                self.sock = server.tls_context.wrap_socket(self.sock, server_side=True)
                server.live_sockets[self.key] = self.sock
                self.reader = self.sock.makefile("rb")
                self.encrypted = True
                self.authenticated = False
                self.reset()
            elif verb == "AUTH":
                self.authenticate(argument)
            elif verb == "MAIL":
                if server.credentials and not self.authenticated:
                    self.send("530 5.7.0 Authentication required")
                    continue
                self.reset()
                self.mail_from = _address(argument)
                self.send("250 2.1.0 Ok")
            elif verb == "RCPT":
                if self.mail_from is None:
                    self.send("503 5.5.1 MAIL first")
                    continue
                self.rcpt_to.append(_address(argument))
                self.send("250 2.1.5 Ok")
            elif verb == "DATA":
                if not self.rcpt_to:
                    self.send("503 5.5.1 RCPT first")
                    continue
                self.send("354 End data with <CR><LF>.<CR><LF>")
                lines = []
                while True:
                    line = self.readline()
                    if line == ".":
                        break
                    lines.append(line[1:] if line.startswith("..") else line)
                self.server.record(server.messages,
                                    Message(self.mail_from, self.rcpt_to, "\n".join(lines)))
                self.reset()
                self.send("250 2.0.0 Ok: queued")
            elif verb in ("RSET", "NOOP"):
                if verb == "RSET":
                    self.reset()
                self.send("250 2.0.0 Ok")
            elif verb == "QUIT":
                self.send("221 2.0.0 Bye")
                return
            else:
                self.send("502 5.5.2 Command not recognized")

    def reset(self):
        self.mail_from = None
        self.rcpt_to = []

    def auth_offered(self):
        return bool(self.server.credentials) and (
            self.server.tls != "starttls" or self.encrypted)

    def authenticate(self, argument):
        mechanism, _, initial = argument.partition(" ")
        mechanism = mechanism.upper()
        if not self.auth_offered():
            self.send("538 5.7.11 Encryption required for requested authentication mechanism"
                      if self.server.credentials else "502 5.5.1 AUTH not available")
            return
        if mechanism == "PLAIN":
            sent = initial or self.challenge("")
            _, user, password = (_decode(sent).split("\0") + ["", ""])[:3]
        elif mechanism == "LOGIN":
            sent = initial or self.challenge("VXNlcm5hbWU6")  # "Username:"
            user = _decode(sent)
            sent = self.challenge("UGFzc3dvcmQ6")  # "Password:"
            password = _decode(sent)
        else:
            self.send("504 5.5.4 Unrecognized authentication type")
            return
        self.server.record(self.server.auth, (mechanism, user, password))
        if (user, password) == tuple(self.server.credentials):
            self.authenticated = True
            self.send("235 2.7.0 Authentication successful")
        elif self.server.echo_credentials:
            self.send("535 5.7.8 Authentication credentials invalid: %s (%s)" % (sent,
                                                                                  password))
        else:
            self.send("535 5.7.8 Authentication credentials invalid")

    def challenge(self, text):
        self.send("334 " + text)
        return self.readline()


def _address(argument):
    """The address in ``FROM:<a@b> ...`` or ``TO:<a@b>``."""
    start, end = argument.find("<"), argument.find(">")
    return argument[start + 1:end] if 0 <= start < end else argument.partition(":")[2]


def _decode(text):
    return base64.b64decode(text.encode("ascii")).decode("utf-8", "replace")
