"""The fence-peer handler's verdicts: DRBD's exit codes, failing closed on any doubt."""

import io
import json
import os
import time

import pytest

from iscsi_ha import config as config_module, fence


@pytest.mark.parametrize("answer, peer_down, code", [
    (fence.OUTDATED, False, 4),
    (fence.OUTDATED, True, 4),
    (fence.INCONSISTENT, False, 3),
    (fence.PRIMARY, False, 6),
    # A Primary peer wins over the caller's word that it is down.
    (fence.PRIMARY, True, 6),
    (fence.UNREACHABLE, True, 7),
    (fence.UNREACHABLE, False, 1),
    (fence.REFUSED, False, 1),
    (fence.REFUSED, True, 1),
])
def test_verdict_table(answer, peer_down, code):
    assert fence.verdict(answer, "detail", peer_down)[0] == code


def test_an_unreachable_peer_is_never_assumed_dead():
    code, reason = fence.verdict(fence.UNREACHABLE, "XAPI: CANNOT_CONTACT_HOST", False)
    assert code == 1
    assert "nobody confirmed it is down: it may still be writing" in reason


@pytest.mark.parametrize("result, answer", [
    ({"role": "Primary", "disk": "UpToDate"}, fence.PRIMARY),
    ({"role": "Secondary", "disk": "Outdated"}, fence.OUTDATED),
    ({"role": "Unconfigured", "disk": "Outdated"}, fence.OUTDATED),
    ({"role": "Secondary", "disk": "Inconsistent"}, fence.INCONSISTENT),
    ({"role": "Secondary", "disk": "UpToDate"}, fence.REFUSED),
    ({}, fence.REFUSED),
])
def test_what_the_peer_reports_decides_the_answer(result, answer):
    assert fence._answer_from_result(result)[0] == answer


def test_peer_down_confirmation_is_for_one_resource_and_expires(tmp_path):
    marker = str(tmp_path / "run" / "peer-down.r0")
    assert not fence.peer_down_confirmed(marker, "r0")
    fence.confirm_peer_down(marker, "r0", 30)
    assert fence.peer_down_confirmed(marker, "r0")
    assert not fence.peer_down_confirmed(marker, "r1")
    assert not fence.peer_down_confirmed(marker, "r0", now=time.time() + 31)
    fence.withdraw_peer_down(marker)
    assert not os.path.exists(marker)
    fence.withdraw_peer_down(marker)  # gone already is fine


def test_a_damaged_confirmation_counts_as_none(tmp_path):
    marker = str(tmp_path / "peer-down.r0")
    for text in ("", "{", json.dumps({"resource": "r0"}), json.dumps([1])):
        with open(marker, "w") as handle:
            handle.write(text)
        assert not fence.peer_down_confirmed(marker, "r0")


def test_the_callers_confirmation_shortens_the_wait_for_the_peer():
    assert fence.answer_wait(True, 10.0, 0.2) == 0.2
    assert fence.answer_wait(False, 10.0, 0.2) == 10.0


def write_config(tmp_path, fence_timeout, fence_confirmed):
    text = config_module.render_sample(
        state_dir=str(tmp_path / "state"), run_dir=str(tmp_path / "run"),
        log_file=str(tmp_path / "iscsi-ha.log"), inventory=str(tmp_path / "inventory"))
    text = text.replace(u"fence = 10", u"fence = %s" % fence_timeout).replace(
        u"fence_confirmed = 0.2", u"fence_confirmed = %s" % fence_confirmed)
    path = str(tmp_path / "iscsi-ha.conf")
    with io.open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return path


@pytest.fixture
def config_file(tmp_path):
    return write_config(tmp_path, "0.3", "0.2")


def confirm(config_file):
    config = config_module.load(config_file)
    fence.confirm_peer_down(config.peer_down_marker_path("iscsi1"), "iscsi1", 30)


def run_main(config_file, monkeypatch, capsys, answer):
    monkeypatch.setattr(fence, "ask_peer", answer)
    code = fence.main(["--config", config_file], environ={"DRBD_RESOURCE": "iscsi1"})
    return code, capsys.readouterr()


def test_handler_outdated_peer_exits_4_and_logs_why(config_file, monkeypatch, capsys):
    code, output = run_main(config_file, monkeypatch, capsys,
                            lambda config, resource: (fence.OUTDATED, "it reports Outdated"))
    assert code == 4
    assert "the peer's copy is Outdated" in output.out
    with open(config_module.load(config_file).log_file) as log:
        assert "fence-peer iscsi1: exit 4: the peer's copy is Outdated" in log.read()


def test_handler_gives_7_only_with_the_promotes_confirmation(config_file, monkeypatch,
                                                             capsys):
    unreachable = lambda config, resource: (fence.UNREACHABLE, "XAPI: HOST_OFFLINE")
    assert run_main(config_file, monkeypatch, capsys, unreachable)[0] == 1
    config = config_module.load(config_file)
    fence.confirm_peer_down(config.peer_down_marker_path("iscsi1"), "iscsi1", 30)
    assert run_main(config_file, monkeypatch, capsys, unreachable)[0] == 7


def test_a_hung_xapi_call_is_bounded_and_counts_as_unreachable(config_file, monkeypatch,
                                                               capsys):
    def hang(config, resource):
        time.sleep(30)

    started = time.time()
    code, output = run_main(config_file, monkeypatch, capsys, hang)
    assert code == 1
    assert "no answer through XAPI within 0.3 s" in output.out
    assert time.time() - started < 25  # returned long before the call would have


def test_a_crash_while_asking_is_doubt_not_a_verdict(config_file, monkeypatch, capsys):
    def crash(config, resource):
        raise KeyError("uuid")

    config = config_module.load(config_file)
    fence.confirm_peer_down(config.peer_down_marker_path("iscsi1"), "iscsi1", 30)
    assert run_main(config_file, monkeypatch, capsys, crash)[0] == 1


def test_handler_without_drbds_environment_or_with_a_bad_config_fails_closed(
        tmp_path, capsys):
    assert fence.main([], environ={}) == 1
    assert "DRBD_RESOURCE is not set" in capsys.readouterr().err
    missing = str(tmp_path / "nope.conf")
    assert fence.main(["--config", missing], environ={"DRBD_RESOURCE": "r0"}) == 1
    assert "cannot read config" in capsys.readouterr().err
    assert fence.main(["--bogus"], environ={"DRBD_RESOURCE": "r0"}) == 1


def answers_after(seconds, answer):
    def ask(config, resource):
        time.sleep(seconds)
        return answer
    return ask


def test_with_the_confirmation_silence_is_fenced_after_the_short_wait(tmp_path, monkeypatch,
                                                                     capsys):
    config_file = write_config(tmp_path, "30", "0.05")
    confirm(config_file)
    code, output = run_main(config_file, monkeypatch, capsys,
                            answers_after(30, (fence.OUTDATED, "too late")))
    assert code == 7
    assert "no answer through XAPI within 0.05 s" in output.out
    assert "confirmed it is down" in output.out


@pytest.mark.parametrize("answer, code", [((fence.OUTDATED, "it reports disk Outdated"), 4),
                                          ((fence.PRIMARY, "it reports role Primary"), 6),
                                          ((fence.REFUSED, "XAPI: SESSION_INVALID"), 1)])
def test_with_the_confirmation_a_peer_that_answers_in_time_is_heard(
        tmp_path, monkeypatch, capsys, answer, code):
    config_file = write_config(tmp_path, "30", "5")
    confirm(config_file)
    assert run_main(config_file, monkeypatch, capsys, answers_after(0.01, answer))[0] == code


def test_without_the_confirmation_the_full_fence_timeout_bounds_the_wait(
        tmp_path, monkeypatch, capsys):
    config_file = write_config(tmp_path, "0.1", "0.05")
    code, output = run_main(config_file, monkeypatch, capsys,
                            answers_after(30, (fence.OUTDATED, "too late")))
    assert code == 1
    assert "no answer through XAPI within 0.1 s" in output.out
    assert "nobody confirmed it is down" in output.out


def test_an_expired_confirmation_is_no_confirmation(config_file, monkeypatch, capsys):
    config = config_module.load(config_file)
    fence.confirm_peer_down(config.peer_down_marker_path("iscsi1"), "iscsi1", -1)
    code, output = run_main(config_file, monkeypatch, capsys,
                            answers_after(30, (fence.OUTDATED, "too late")))
    assert code == 1
    assert "within 0.3 s" in output.out
