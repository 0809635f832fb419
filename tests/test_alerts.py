"""Alerts: XAPI messages with xapi's priorities, e-mail over a real SMTP socket, no floods,
nothing that stops or slows the controller's loop, and no password in the log."""

import base64
import json
import logging
import socket
import threading

import pytest

from iscsi_ha import config
from iscsi_ha_controller import alerts
from tests.support.smtp_server import SmtpServer, WAIT, certificate_file

POOL = "8e7a1c52-0000-4000-8000-000000000001"
HOST_A = "3c1d9a80-0000-4000-8000-00000000000a"
HOST_B = "3c1d9a80-0000-4000-8000-00000000000b"
PASSWORD = "s3cret-Pass"
WINDOW = 1800.0


class Clock(object):
    def __init__(self):
        self.now = 1767225600.0

    def __call__(self):
        return self.now


class Xapi(object):
    """Stands in for the daemon's message.create; ``failure`` is raised when set."""

    def __init__(self):
        self.messages = []
        self.failure = None

    def __call__(self, name, priority, cls, obj_uuid, body):
        if self.failure is not None:
            raise self.failure
        self.messages.append((name, priority, cls, obj_uuid, body))


class Log(logging.Handler):
    def __init__(self):
        logging.Handler.__init__(self)
        self.lines = []

    def emit(self, record):
        self.lines.append("%s %s" % (record.levelname, record.getMessage()))

    @property
    def text(self):
        return "\n".join(self.lines)


@pytest.fixture
def log():
    logger = logging.getLogger("iscsi-ha")
    handler, level = Log(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.fixture
def make(tmp_path):
    """Builds Alerters on one state file; each is closed (its mail worker ended) afterwards."""
    made = []

    def make_alerter(xapi, clock, **settings):
        values = {"email_to": [], "email_from": "", "smtp_server": "", "smtp_port": 0,
                  "smtp_security": "none", "smtp_username": "", "smtp_password_file": "",
                  "repeat_window": WINDOW}
        values.update(settings)
        made.append(alerts.Alerter(config.Alerts(values), str(tmp_path / "alerts.json"),
                                   xapi, clock=clock))
        return made[-1]
    yield make_alerter
    for alerter in made:
        alerter.close(WAIT)


def mail_settings(server, tmp_path, **settings):
    values = {"email_to": ["ops@example.com", "oncall@example.com"],
              "smtp_server": "localhost", "smtp_port": server.port}
    if server.credentials:
        path = tmp_path / "smtp-password"
        path.write_text(u"%s\nsecond line, not part of it\n" % PASSWORD)
        values.update(smtp_username="alerts", smtp_password_file=str(path))
    values.update(settings)
    return values


def assert_no_secret(log_text):
    assert PASSWORD not in log_text
    for secret in (PASSWORD, "\0alerts\0" + PASSWORD):
        assert base64.b64encode(secret.encode("utf-8")).decode("ascii") not in log_text


def test_each_kind_is_a_xapi_message_with_xapis_priority():
    assert sorted(alerts.KINDS) == sorted([
        "failover-started", "failover-done", "failover-failed", "replication-degraded",
        "split-brain", "config-mismatch", "manual-mode-on", "storage-blocked",
        "sr-repair-failed"])
    for kind, (name, priority) in alerts.KINDS.items():
        assert name == "ISCSI_HA_" + kind.upper().replace("-", "_")
        assert priority in alerts.PRIORITY_MEANINGS
    priority = dict((kind, p) for kind, (_, p) in alerts.KINDS.items())
    # XenCenter sorts by it: data loss first, then the storage going dark, news last.
    assert priority["split-brain"] == 1
    assert priority["failover-failed"] == priority["storage-blocked"] == 2
    assert priority["failover-done"] == 4 and priority["failover-started"] == 5


def test_an_alert_is_a_xapi_message_on_its_host_or_on_the_pool(make, log):
    xapi = Xapi()
    alerter = make(xapi, Clock())
    assert alerter.alert("split-brain", "iscsi1 was Primary on both hosts\ndetails",
                         host_uuid=HOST_A, pool_uuid=POOL)
    assert alerter.alert("manual-mode-on", "manual mode is on (disk swap)", pool_uuid=POOL)
    assert xapi.messages == [
        ("ISCSI_HA_SPLIT_BRAIN", 1, "Host", HOST_A, "iscsi1 was Primary on both hosts\ndetails"),
        ("ISCSI_HA_MANUAL_MODE_ON", 3, "Pool", POOL, "manual mode is on (disk swap)")]
    assert ("WARNING controller: alert split-brain about host %s (XAPI message "
            "ISCSI_HA_SPLIT_BRAIN, priority 1): iscsi1 was Primary on both hosts" % HOST_A
            in log.lines)


def test_the_same_alert_goes_out_once_per_window_whatever_its_text(make):
    xapi, clock = Xapi(), Clock()
    alerter = make(xapi, clock)
    assert alerter.alert("storage-blocked", "xcp-b's iscsi1 is not UpToDate", HOST_A, POOL)
    clock.now += 60
    # Flapping between two wordings, or raised again on every pass: held back.
    assert not alerter.alert("storage-blocked", "xcp-b does not answer", HOST_A, POOL)
    assert not alerter.alert("storage-blocked", "xcp-b's iscsi1 is not UpToDate", HOST_A, POOL)
    # Another subject, another kind (a resolution): each goes out.
    assert alerter.alert("storage-blocked", "xcp-a does not answer", HOST_B, POOL)
    assert alerter.alert("storage-blocked", "the pool has three hosts", pool_uuid=POOL)
    assert alerter.alert("failover-done", "promoted xcp-b: done", HOST_A, POOL)
    assert [m[0::3] for m in xapi.messages] == [
        ("ISCSI_HA_STORAGE_BLOCKED", HOST_A), ("ISCSI_HA_STORAGE_BLOCKED", HOST_B),
        ("ISCSI_HA_STORAGE_BLOCKED", POOL), ("ISCSI_HA_FAILOVER_DONE", HOST_A)]
    clock.now += WINDOW
    assert alerter.alert("storage-blocked", "xcp-b does not answer", HOST_A, POOL)
    assert xapi.messages[-1][4].startswith("xcp-b does not answer\n")
    assert "Raised 2 more times since" in xapi.messages[-1][4]
    clock.now += 1
    assert not alerter.alert("storage-blocked", "xcp-b does not answer", HOST_A, POOL)
    assert len(xapi.messages) == 5


def test_a_restarted_controller_does_not_repeat_what_went_out(make):
    xapi, clock = Xapi(), Clock()
    make(xapi, clock).alert("replication-degraded", "iscsi1 is not connected", HOST_A, POOL)
    clock.now += 100
    restarted = make(xapi, clock)
    assert not restarted.alert("replication-degraded", "iscsi1 is not connected", HOST_A, POOL)
    assert restarted.alert("config-mismatch", "config digests differ", pool_uuid=POOL)
    clock.now += WINDOW
    assert make(xapi, clock).alert("replication-degraded", "iscsi1 is StandAlone", HOST_A, POOL)
    assert "Raised 1 more times since" in xapi.messages[-1][4]
    assert len(xapi.messages) == 3


def test_an_unreadable_state_file_starts_afresh(make, tmp_path, log):
    (tmp_path / "alerts.json").write_text(u"{not json")
    xapi = Xapi()
    assert make(xapi, Clock()).alert("split-brain", "iscsi1 split brain", HOST_A, POOL)
    assert len(xapi.messages) == 1
    assert "is not an alerts state file" in log.text
    with open(str(tmp_path / "alerts.json")) as handle:
        assert list(json.load(handle)["sent"]) == ["split-brain %s" % HOST_A]


def test_a_clock_that_stepped_back_ends_the_window(make):
    xapi, clock = Xapi(), Clock()
    alerter = make(xapi, clock)
    assert alerter.alert("failover-failed", "promote on xcp-b failed", HOST_B, POOL)
    clock.now -= 3600
    assert alerter.alert("failover-failed", "promote on xcp-b failed", HOST_B, POOL)
    assert len(xapi.messages) == 2


def test_a_failing_xapi_never_reaches_the_loop_and_is_tried_again(make, log):
    xapi, clock = Xapi(), Clock()
    alerter = make(xapi, clock)
    xapi.failure = socket.error(111, "Connection refused")
    assert not alerter.alert("failover-started", "promoting xcp-b", HOST_B, POOL)
    assert "XAPI message.create failed" in log.text and "Connection refused" in log.text
    xapi.failure = None
    clock.now += 1  # nothing went out, so no window holds it back
    assert alerter.alert("failover-started", "promoting xcp-b", HOST_B, POOL)
    assert [m[0] for m in xapi.messages] == ["ISCSI_HA_FAILOVER_STARTED"]


def test_an_alert_needs_a_subject_xapi_knows_and_a_known_kind(make, log):
    xapi = Xapi()
    alerter = make(xapi, Clock())
    assert not alerter.alert("storage-blocked", "no pool yet")
    assert "the pool is not known yet" in log.text
    with pytest.raises(ValueError) as raised:
        alerter.alert("failover-finished", "typo", pool_uuid=POOL)
    assert "failover-done" in str(raised.value)
    assert xapi.messages == []


def test_an_alert_is_also_mailed(make, tmp_path, log):
    xapi = Xapi()
    with SmtpServer() as server:
        alerter = make(xapi, Clock(), **mail_settings(server, tmp_path))
        assert alerter.alert("failover-done", "promoted xcp-b: done\nsteps: drbd-primary",
                             host_uuid=HOST_B, pool_uuid=POOL)
        assert server.wait_for(lambda: server.messages)
        alerter.close(WAIT)
    message, = server.messages
    assert message.subject == "[iscsi-ha] failover-done: promoted xcp-b: done"
    assert message.mail_from == "iscsi-ha@%s" % socket.gethostname()
    assert message.email["From"] == message.mail_from
    assert message.rcpt_to == ["ops@example.com", "oncall@example.com"]
    assert message.email["To"] == "ops@example.com, oncall@example.com"
    assert message.body.startswith("promoted xcp-b: done\nsteps: drbd-primary\n")
    assert "priority 4: service recovered" in message.body
    assert HOST_B in message.body and POOL in message.body
    assert len(xapi.messages) == 1
    assert "INFO controller: alert failover-done e-mailed to ops@example.com, " \
           "oncall@example.com" in log.lines


def test_mail_from_the_configured_sender_in_any_language(make, tmp_path):
    with SmtpServer() as server:
        alerter = make(Xapi(), Clock(), **mail_settings(
            server, tmp_path, email_from="storage@example.com", email_to=["ops@example.com"]))
        alerter.alert("split-brain", u"iscsi1 diverged on h\u00f4te-a", HOST_A, POOL)
        assert server.wait_for(lambda: server.messages)
    message, = server.messages
    assert message.mail_from == "storage@example.com"
    assert message.subject == u"[iscsi-ha] split-brain: iscsi1 diverged on h\u00f4te-a"
    assert message.body.startswith(u"iscsi1 diverged on h\u00f4te-a\n")


def test_mail_still_goes_out_when_xapi_does_not_take_the_message(make, tmp_path):
    xapi = Xapi()
    xapi.failure = RuntimeError("xapi is restarting")
    with SmtpServer() as server:
        alerter = make(xapi, Clock(), **mail_settings(server, tmp_path))
        assert alerter.alert("failover-failed", "demote on xcp-a failed", HOST_A, POOL)
        assert server.wait_for(lambda: server.messages)
    assert not alerter.alert("failover-failed", "demote on xcp-a failed", HOST_A, POOL)


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_mail_over_tls_logs_in_with_the_password_files_first_line(
        make, tmp_path, log, monkeypatch, security):
    monkeypatch.setenv("SSL_CERT_FILE", certificate_file(str(tmp_path)))
    with SmtpServer(tls=security, credentials=("alerts", PASSWORD)) as server:
        alerter = make(Xapi(), Clock(), **mail_settings(server, tmp_path,
                                                        smtp_security=security))
        alerter.alert("split-brain", "iscsi1 split brain", HOST_A, POOL)
        assert server.wait_for(lambda: server.messages)
        alerter.close(WAIT)
    assert server.auth == [("PLAIN", "alerts", PASSWORD)]
    assert "e-mailed to" in log.text
    assert_no_secret(log.text)


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_mail_is_not_sent_to_a_server_whose_certificate_is_not_trusted(
        make, tmp_path, log, monkeypatch, security):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    with SmtpServer(tls=security, credentials=("alerts", PASSWORD)) as server:
        alerter = make(Xapi(), Clock(), **mail_settings(server, tmp_path,
                                                        smtp_security=security))
        assert alerter.alert("split-brain", "iscsi1 split brain", HOST_A, POOL)
        alerter.close(WAIT)
    assert server.messages == [] and server.auth == []
    assert "certificate verify failed" in log.text.lower()
    assert_no_secret(log.text)


def test_mail_is_not_sent_to_a_server_the_certificate_does_not_name(
        make, tmp_path, log, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", certificate_file(str(tmp_path)))
    with SmtpServer(tls="starttls", credentials=("alerts", PASSWORD)) as server:
        alerter = make(Xapi(), Clock(), **mail_settings(
            server, tmp_path, smtp_security="starttls", smtp_server="127.0.0.1"))
        alerter.alert("split-brain", "iscsi1 split brain", HOST_A, POOL)
        alerter.close(WAIT)
    assert server.messages == [] and server.auth == []
    assert "127.0.0.1" in log.text and "e-mail to" in log.text


def test_a_refused_login_is_logged_without_the_password(make, tmp_path, log):
    # This server quotes the credentials back in its refusal.
    with SmtpServer(credentials=("alerts", "another"), echo_credentials=True) as server:
        alerter = make(Xapi(), Clock(), **mail_settings(server, tmp_path))
        alerter.alert("config-mismatch", "config digests differ", pool_uuid=POOL)
        alerter.close(WAIT)
    # smtplib tries each mechanism the server offers.
    assert server.auth and set(server.auth) <= set([("PLAIN", "alerts", PASSWORD),
                                                    ("LOGIN", "alerts", PASSWORD)])
    assert server.messages == []
    assert "535 5.7.8 Authentication credentials invalid" in log.text
    assert_no_secret(log.text)


def test_a_missing_password_file_is_named_and_nothing_is_sent(make, tmp_path, log):
    with SmtpServer(credentials=("alerts", PASSWORD)) as server:
        alerter = make(Xapi(), Clock(), **mail_settings(
            server, tmp_path, smtp_password_file=str(tmp_path / "missing")))
        assert alerter.alert("config-mismatch", "config digests differ", pool_uuid=POOL)
        alerter.close(WAIT)
    assert server.accepted == []
    assert "cannot read [alerts] smtp_password_file %s" % (tmp_path / "missing") in log.text


def test_a_mail_server_that_does_not_answer_does_not_hold_up_the_alert(make, tmp_path):
    xapi, hold = Xapi(), threading.Event()
    with SmtpServer(hold=hold) as server:
        alerter = make(xapi, Clock(), **mail_settings(server, tmp_path))
        # The server greets nobody until hold is set, which happens only once alert() has
        # returned: an alert() that waited for the e-mail would time out first, and no
        # message would ever arrive.
        assert alerter.alert("failover-failed", "promote on xcp-b failed", HOST_B, POOL)
        assert len(xapi.messages) == 1 and server.messages == []
        hold.set()
        assert server.wait_for(lambda: server.messages)


def test_an_unreachable_mail_server_is_logged(make, tmp_path, log):
    with SmtpServer() as server:
        port = server.port
    alerter = make(Xapi(), Clock(), email_to=["ops@example.com"], smtp_server="localhost",
                   smtp_port=port)
    assert alerter.alert("failover-failed", "promote on xcp-b failed", HOST_B, POOL)
    alerter.close(WAIT)
    assert "e-mail to ops@example.com via localhost:%d failed" % port in log.text


def test_mail_beyond_the_queue_is_dropped_while_the_server_hangs(make, tmp_path, log):
    xapi, hold = Xapi(), threading.Event()
    with SmtpServer(hold=hold) as server:
        alerter = make(xapi, Clock(), **mail_settings(server, tmp_path))
        # The worker holds at most one of them, the queue the next EMAIL_QUEUE.
        for number in range(alerts.EMAIL_QUEUE + 2):
            host = "3c1d9a80-0000-4000-8000-%012d" % number
            assert alerter.alert("replication-degraded", "iscsi1 StandAlone", host, POOL)
        assert len(xapi.messages) == alerts.EMAIL_QUEUE + 2
        assert "e-mail dropped, %d e-mails are still waiting for localhost" \
            % alerts.EMAIL_QUEUE in log.text
        hold.set()
        alerter.close(WAIT)
        assert alerts.EMAIL_QUEUE <= len(server.messages) <= alerts.EMAIL_QUEUE + 1
