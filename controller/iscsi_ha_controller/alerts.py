"""Alerts: a XAPI message for each (XenCenter lists them), e-mail if configured, no floods.

Each kind is one XAPI message name with one priority, on xapi's scale (1 = act now or
data may be lost ... 5 = informational):

| kind                 | XAPI message name             | prio | why                             |
|----------------------|-------------------------------|------|---------------------------------|
| split-brain          | ISCSI_HA_SPLIT_BRAIN          | 1    | copies diverged: writes will go |
| failover-failed      | ISCSI_HA_FAILOVER_FAILED      | 2    | a move broke off: maybe dark    |
| storage-blocked      | ISCSI_HA_STORAGE_BLOCKED      | 2    | cannot follow the master safely |
| replication-degraded | ISCSI_HA_REPLICATION_DEGRADED | 3    | one good copy left              |
| config-mismatch      | ISCSI_HA_CONFIG_MISMATCH      | 3    | automatic promotion refused     |
| manual-mode-on       | ISCSI_HA_MANUAL_MODE_ON       | 3    | nothing moves by itself         |
| sr-repair-failed     | ISCSI_HA_SR_REPAIR_FAILED     | 3    | an SR stays unplugged on a host |
| failover-done        | ISCSI_HA_FAILOVER_DONE        | 4    | service recovered               |
| failover-started     | ISCSI_HA_FAILOVER_STARTED     | 5    | news; done or failed follows    |

An alert is about one subject: a host (XAPI class ``Host``) or the pool (class ``Pool``).
The same kind about the same subject goes out at most once per ``[alerts] repeat_window``,
whatever its text: a condition that flaps between two wordings, or that every pass raises
again, makes one alert per window, and the next one that goes out says how often it was
held back. Kinds are separate, so a resolution (failover-done after failover-started)
always goes out. The window counts from the last alert that went out somewhere (a XAPI
message created, or an e-mail queued): an alert that XAPI refused and no e-mail carried is
tried again on the next call. The times are kept in a JSON file so that a restarted
controller does not repeat them. A clock that stepped back before the last alert ends the
window.

``alert`` returns within milliseconds of the XAPI message: e-mail goes out from a worker
thread (a bounded queue; a full one drops the e-mail, logged), and no failure is raised.
TLS (``smtp_security`` tls or starttls) checks the server's certificate against the
system's CA store and its name; on Python 2.7 name the server by DNS name, since 2.7 cannot
match a certificate to an IP address. The SMTP password is read from the first line of
``smtp_password_file`` for each e-mail and never logged.
"""

import base64
import email.utils
import io
import json
import logging
import os
import smtplib
import socket
import ssl
import threading
import time
from email.header import Header
from email.mime.text import MIMEText

import six
from six.moves import queue

LOG = logging.getLogger("iscsi-ha")

# Data loss, service loss, degraded, recovered, informational: xapi's scale.
PRIORITY_MEANINGS = {1: "data loss imminent", 2: "service loss imminent",
                     3: "service degraded", 4: "service recovered", 5: "informational"}
KINDS = {
    "split-brain": ("ISCSI_HA_SPLIT_BRAIN", 1),
    "failover-failed": ("ISCSI_HA_FAILOVER_FAILED", 2),
    "storage-blocked": ("ISCSI_HA_STORAGE_BLOCKED", 2),
    "replication-degraded": ("ISCSI_HA_REPLICATION_DEGRADED", 3),
    "config-mismatch": ("ISCSI_HA_CONFIG_MISMATCH", 3),
    "manual-mode-on": ("ISCSI_HA_MANUAL_MODE_ON", 3),
    "sr-repair-failed": ("ISCSI_HA_SR_REPAIR_FAILED", 3),
    "failover-done": ("ISCSI_HA_FAILOVER_DONE", 4),
    "failover-started": ("ISCSI_HA_FAILOVER_STARTED", 5),
}
SMTP_TIMEOUT = 10.0  # seconds, for each network operation of one e-mail
# E-mails waiting for the worker: more than a few dozen means the server is down, and older
# news about the same pool is already waiting.
EMAIL_QUEUE = 20
_STOP = None  # the worker's signal to end


class Alerter(object):
    """Sends alerts; ``alerts_config`` is ``config.alerts``, ``state_path`` the JSON file
    remembering when each went out, ``send_message(name, priority, cls, obj_uuid, body)``
    creates a XAPI message (the daemon bounds its time)."""

    def __init__(self, alerts_config, state_path, send_message, clock=time.time):
        self._config = alerts_config
        self._state_path = state_path
        self._send_message = send_message
        self._clock = clock
        self._sender = alerts_config.email_from or "iscsi-ha@%s" % socket.gethostname()
        self._queue = queue.Queue(EMAIL_QUEUE)
        self._worker = None
        self._save_problem = None
        self._sent = self._load()

    def alert(self, kind, text, host_uuid=None, pool_uuid=None):
        """Raise ``kind`` about host ``host_uuid``, or about the pool ``pool_uuid`` when no
        host is given. True if it went out, False if the repeat window held it back or no
        channel took it. Raises only ValueError, for a kind not in KINDS (a bug)."""
        if kind not in KINDS:
            raise ValueError("unknown alert kind %r; use one of %s" % (kind, ", ".join(
                sorted(KINDS))))
        name, priority = KINDS[kind]
        now = self._clock()
        key = "%s %s" % (kind, host_uuid or "pool")
        record = self._sent.get(key)
        if record is not None and 0 <= now - record["at"] < self._config.repeat_window:
            record["held"] += 1
            self._save()
            LOG.debug("controller: alert %s held back (sent %.0f s ago): %s", kind,
                      now - record["at"], _first_line(text))
            return False
        body = _text(text)
        if record is not None and record["held"]:
            body += "\n\n(Raised %d more times since %s without an alert.)" % (
                record["held"], email.utils.formatdate(record["at"], localtime=True))
        channels = []
        if self._to_xapi(kind, name, priority, body, host_uuid, pool_uuid):
            channels.append("XAPI message %s, priority %d" % (name, priority))
        if self._config.email_to and self._to_email(kind, priority, body, host_uuid,
                                                    pool_uuid, now):
            channels.append("e-mail queued for %s" % ", ".join(self._config.email_to))
        if not channels:
            return False
        self._sent[key] = {"at": now, "held": 0}
        self._save()
        LOG.log(logging.WARNING if priority <= 3 else logging.INFO,
                "controller: alert %s%s (%s): %s", kind,
                " about host %s" % host_uuid if host_uuid else "", "; ".join(channels),
                _first_line(text))
        return True

    def close(self, timeout=SMTP_TIMEOUT):
        """Let the worker send what is queued and end; wait at most ``timeout`` seconds."""
        worker, self._worker = self._worker, None
        if worker is None:
            return
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            return
        worker.join(timeout)

    def _to_xapi(self, kind, name, priority, body, host_uuid, pool_uuid):
        cls, obj_uuid = ("Host", host_uuid) if host_uuid else ("Pool", pool_uuid)
        if not obj_uuid:
            LOG.warning("controller: alert %s: no XAPI message, the pool is not known yet",
                        kind)
            return False
        try:
            self._send_message(name, priority, cls, obj_uuid, body)
        except Exception as exc:  # pylint: disable=broad-except
            # Whatever went wrong in XAPI, the controller's loop must go on.
            LOG.warning("controller: alert %s: XAPI message.create failed: %s", kind,
                        _describe(exc))
            return False
        return True

    def _to_email(self, kind, priority, body, host_uuid, pool_uuid, now):
        subject = "[iscsi-ha] %s: %s" % (kind, _first_line(body))
        details = ["Alert: %s (%s, priority %d: %s)" % (kind, KINDS[kind][0], priority,
                                                        PRIORITY_MEANINGS[priority])]
        if pool_uuid:
            details.append("Pool: %s" % pool_uuid)
        if host_uuid:
            details.append("Host: %s" % host_uuid)
        details.append("Sent by iscsi-ha-controller on %s" % socket.gethostname())
        try:
            self._queue.put_nowait((kind, subject, body + "\n\n" + "\n".join(details) + "\n",
                                    now))
        except queue.Full:
            LOG.warning("controller: alert %s: e-mail dropped, %d e-mails are still waiting "
                        "for %s", kind, EMAIL_QUEUE, self._config.smtp_server)
            return False
        if self._worker is None:
            self._worker = threading.Thread(target=self._mail_worker,
                                            name="iscsi-ha-alert-mail")
            self._worker.daemon = True  # a stuck server must not hold up the exit
            self._worker.start()
        return True

    def _mail_worker(self):
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            kind, subject, body, at = item
            try:
                self._send_email(subject, body, at)
            except _NotSent as exc:
                LOG.error("controller: alert %s: e-mail not sent: %s", kind, exc)
            except Exception as exc:  # pylint: disable=broad-except
                # Texts from the SMTP exchange may quote the credentials back.
                LOG.warning("controller: alert %s: e-mail to %s via %s:%d failed: %s", kind,
                            ", ".join(self._config.email_to), self._config.smtp_server,
                            self._config.smtp_port, _describe(exc, self._secrets()))
            else:
                LOG.info("controller: alert %s e-mailed to %s", kind,
                         ", ".join(self._config.email_to))

    def _send_email(self, subject, body, at):
        config = self._config
        message = MIMEText(body, "plain", "utf-8")
        message["Subject"] = _header(subject)
        message["From"] = self._sender
        message["To"] = ", ".join(config.email_to)
        message["Date"] = email.utils.formatdate(at, localtime=True)
        password = self._password() if config.smtp_username else None
        client = _Smtp(config.smtp_server, config.smtp_port, config.smtp_security)
        try:
            if config.smtp_security == "starttls":
                client.starttls_checked()
            if config.smtp_username:
                client.login(config.smtp_username, password)
            refused = client.sendmail(self._sender, config.email_to, message.as_string())
        finally:
            _hang_up(client)
        if refused:
            LOG.warning("controller: the mail server refused %s", ", ".join(sorted(refused)))

    def _password(self):
        path = self._config.smtp_password_file
        if not path:
            raise _NotSent("[alerts] smtp_username is set but smtp_password_file is not; "
                           "name the file that holds the SMTP password")
        try:
            with io.open(path, encoding="utf-8") as handle:
                return handle.readline().strip()
        except (IOError, OSError, UnicodeError) as exc:
            raise _NotSent("cannot read [alerts] smtp_password_file %s (%s)"
                           % (path, getattr(exc, "strerror", None) or type(exc).__name__))

    def _secrets(self):
        """What must not reach the log: the password, as sent in the clear or in AUTH."""
        if not self._config.smtp_username:
            return []
        try:
            password = self._password()
        except _NotSent:
            return []
        if not password:
            return []
        encoded = [password.encode("utf-8"), ("\0%s\0%s" % (
            self._config.smtp_username, password)).encode("utf-8")]
        return [password] + [base64.b64encode(b).decode("ascii") for b in encoded]

    def _load(self):
        try:
            with open(self._state_path) as handle:
                sent = json.load(handle)["sent"]
            return dict((key, {"at": float(value["at"]), "held": int(value["held"])})
                        for key, value in sent.items())
        except (IOError, OSError) as exc:
            if os.path.exists(self._state_path):
                LOG.warning("controller: cannot read %s (%s); alerts may repeat once",
                            self._state_path, exc.strerror or exc)
        except (ValueError, KeyError, TypeError, AttributeError):
            LOG.warning("controller: %s is not an alerts state file; starting afresh, so "
                        "alerts may repeat once", self._state_path)
        return {}

    def _save(self):
        now = self._clock()
        # Records past their window hold nothing back; keep them only for their count.
        self._sent = dict((key, value) for key, value in self._sent.items()
                          if value["held"] or now - value["at"] < self._config.repeat_window)
        temporary = "%s.%d.tmp" % (self._state_path, os.getpid())
        try:
            with open(temporary, "w") as handle:
                json.dump({"sent": self._sent}, handle, sort_keys=True)
            os.rename(temporary, self._state_path)
        except (IOError, OSError) as exc:
            try:
                os.unlink(temporary)
            except OSError:
                pass
            problem = exc.strerror or str(exc)
            if problem != self._save_problem:  # once, not on every pass
                LOG.warning("controller: cannot write %s (%s); a restart may repeat alerts",
                            self._state_path, problem)
            self._save_problem = problem
        else:
            self._save_problem = None


class _NotSent(Exception):
    """The e-mail could not even be tried; the text names the setting to fix."""


class _Smtp(smtplib.SMTP):
    """An SMTP connection whose TLS, implicit or by STARTTLS, checks the server's
    certificate and name on every Python: 2.7's smtplib cannot, 3.x's does not by default.
    It names itself by host name, since smtplib's default (the FQDN) may wait on DNS."""

    def __init__(self, server, port, security):
        self._server = server
        self._implicit_tls = security == "tls"
        self._context = ssl.create_default_context() if security != "none" else None
        smtplib.SMTP.__init__(self, local_hostname=socket.gethostname(),
                              timeout=SMTP_TIMEOUT)
        self.connect(server, port)

    def _get_socket(self, host, port, timeout):
        sock = smtplib.SMTP._get_socket(self, host, port, timeout)
        if not self._implicit_tls:
            return sock
        try:
            return self._context.wrap_socket(sock, server_hostname=self._server)
        except Exception:
            sock.close()
            raise

    def starttls_checked(self):
        self.ehlo()
        if not self.has_extn("starttls"):
            raise smtplib.SMTPException("the server does not offer STARTTLS; set "
                                        "[alerts] smtp_security to what it offers")
        code, reply = self.docmd("STARTTLS")
        if code != 220:
            raise smtplib.SMTPResponseException(code, reply)
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self._server)
        # What was said in the clear no longer counts (RFC 3207).
        self.file = None
        self.helo_resp = self.ehlo_resp = None
        self.esmtp_features = {}
        self.does_esmtp = False


def _hang_up(client):
    try:
        client.quit()
    except (smtplib.SMTPException, socket.error, ssl.SSLError):
        client.close()


def _describe(exc, secrets=()):
    """An exception as one line for the log, without ``secrets``."""
    if isinstance(exc, smtplib.SMTPResponseException):
        reply = exc.smtp_error
        if isinstance(reply, bytes):
            reply = reply.decode("utf-8", "replace")
        text = "%s %s" % (exc.smtp_code, reply)
    else:
        try:
            text = six.text_type(exc)
        except UnicodeError:  # Python 2: a byte string that is not ASCII
            text = _text(str(exc))
        text = text or type(exc).__name__
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def _text(value):
    if isinstance(value, six.binary_type):
        return value.decode("utf-8", "replace")
    return six.text_type(value)


def _first_line(text):
    lines = _text(text).strip().splitlines()
    return lines[0] if lines else ""


def _header(text):
    try:
        text.encode("ascii")
    except UnicodeError:
        return Header(text, "utf-8")
    return str(text)
