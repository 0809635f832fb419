# -*- coding: utf-8 -*-
"""Hostile input for the plugin: what a test feeds it, the host it runs on, and a count.

The plugin runs in-process through its real entry file (``runpy`` with argv[1]
the XML-RPC methodCall, as xapi starts it) on a recorded host: every external
tool call goes to :class:`RecordedHost` instead of a process, answered as a
standby with tgtd down would answer, so an example costs milliseconds. A
smaller set runs the plugin file as a process on the same host made of
shell-script tools (:meth:`RecordedHost.write_tools`).

"Nothing on the host changed" is :meth:`RecordedHost.state` before and after:
the files under the host's config, state and run directories, and the tool
calls made (:meth:`RecordedHost.changes` leaves out what reading the host
leaves: its queries, the log, the lock file).

Every hostile test counts its examples (:func:`count`); with
``ISCSI_HA_HOSTILE_JSON=FILE`` the session writes the count there
(tests/conftest.py). ``python -m tests.support.hostile`` runs the whole suite
(:data:`SUITE`) under a profile and reports the count, for ``make faults``.
"""

import collections
import hashlib
import io
import json
import os
import re
import runpy
import shutil
import sys
import tempfile

import six
from six.moves import xmlrpc_client

from iscsi_ha import commands, config as config_module
from iscsi_ha.errors import CommandFailed
from tests.support import plugin

EXAMPLES = collections.Counter()
COUNT_VARIABLE = "ISCSI_HA_HOSTILE_JSON"
PROFILE_VARIABLE = "HYPOTHESIS_PROFILE"
# Examples per test in each profile; a test through processes takes a fifth.
PROFILES = {"ci": 25, "faults": 800}
SESSION = "OpaqueRef:hostile-session"


def count(test_name):
    """Count one example of ``test_name`` (the first line of each hostile test's body;
    a decorator would hide the test's signature from hypothesis 4 on Python 2.7)."""
    EXAMPLES[test_name] += 1


def examples(share=1.0):
    """This profile's example count for one test, times ``share``."""
    return max(1, int(PROFILES[profile()] * share))


def profile():
    return os.environ.get(PROFILE_VARIABLE) or "ci"


def write_count(path):
    with open(path, "w") as handle:
        json.dump({"hostile_examples": sum(EXAMPLES.values()), "profile": profile(),
                   "tests": dict(EXAMPLES)}, handle, indent=2, sort_keys=True)
        handle.write("\n")


# -- what a hostile caller sends -------------------------------------------------------

# Shell syntax, option look-alikes, path tricks, format strings, control characters,
# bidirectional overrides and spellings the plugin must not take for its own words.
NASTY = [
    u"; rm -rf /", u"$(touch /tmp/iscsi-ha-pwned)", u"`reboot`", u"true; reboot",
    u"true\n", u"tr\nue", u" TRUE ", u"true\x00", u"1 && id", u"| cat /etc/shadow",
    u"--force", u"-rf", u"../../etc/passwd", u"%s%s%n", u"{0}", u"' OR '1'='1",
    u"\u202etrue", u"ｔｒｕｅ", u"json ", u"JSON", u"table\r", u"r0; drbdadm primary r0",
    u"r0\nr1", u"*", u"", u" ", u"\t", u"é", u"💥", u"\ufeff", u"\U0010ffff",
    u'["192.0.2.50:41000"; rm -rf /]', u'["192.0.2.50:41000", "$(id):1"]',
    u'["192.0.2.50:0"]', u'["192.0.2.256:1"]', u'[" 192.0.2.50:1"]', u'["192.0.2.50:1 "]',
    u'["192.0.2.50:+1"]', u'["192.0.2.50:01"]', u'["192.0.2.50:١"]', u'[]', u'{}',
    u'"192.0.2.50:1"', u'null', u'[null]', u'[["192.0.2.50:1"]]', u'[1e400]', u'[' * 500,
    u"[" * 100000, u"A" * 70000, u"x" * 4097,
]


def _strategies():
    from hypothesis import strategies as st
    return st


def xml_text(max_size=40):
    """Text XML-RPC can carry in argv (XML 1.0 characters, no NUL): anything a hostile
    but well-formed caller can send."""
    st = _strategies()
    allowed = st.one_of(st.characters(blacklist_categories=("Cs", "Cc"),
                                      blacklist_characters=u"\ufffe\uffff"),
                        st.sampled_from(u"\t\n\r"))
    return st.one_of(st.sampled_from(_XML_NASTY), st.text(allowed, max_size=max_size))


def _xml_safe(text):
    return all(c in u"\t\n\r" or (u"\x20" <= c <= u"\ud7ff") or (u"\ue000" <= c <= u"\ufffd")
               or c > u"\uffff" for c in text)


_XML_NASTY = [text for text in NASTY if _xml_safe(text)]


def valid_value(name):
    """Values the plugin's spec accepts for ``name``, for mixing with hostile ones."""
    st = _strategies()
    ports = st.integers(1, 65535)
    octets = st.integers(0, 255)
    connection = st.builds(lambda a, b, p: u"192.0.%d.%d:%d" % (a, b, p), octets, octets,
                           ports)
    words = {
        "format": st.sampled_from([u"json", u"table"]),
        "tickle": st.lists(connection, max_size=4).map(json.dumps),
        "connections": st.lists(connection, max_size=4).map(json.dumps),
        "resource": st.just(u"r0"),
        "role": st.sampled_from([u"victim", u"survivor"]),
        "files": st.just(u"[]"),
        # true waits for the peer's demote, up to [timeouts] command: the plugin host
        # tests cover it (tests/test_plugin_host.py).
        "await_demote": st.sampled_from([u"false", u" no ", u"0", u"OFF"]),
    }
    if name in words:
        return words[name]
    if name in ("force", "peer_down", "vip_released", "enabled", "dry_run"):
        return st.sampled_from([u"true", u"false", u"Yes", u" no ", u"1", u"0", u"ON",
                                u"off"])
    return xml_text()


def xmlrpc_value(depth=2):
    """Any value XML-RPC can carry: what a caller other than xapi could put in args."""
    st = _strategies()
    scalars = st.one_of(xml_text(), st.integers(-2 ** 31, 2 ** 31 - 1), st.booleans(),
                        st.floats(allow_nan=False, allow_infinity=False), st.none(),
                        st.binary(max_size=8).map(xmlrpc_client.Binary))
    if depth == 0:
        return scalars
    inner = xmlrpc_value(depth - 1)
    return st.one_of(scalars, st.lists(inner, max_size=3),
                     st.dictionaries(xml_text(8), inner, max_size=3))


# -- the host the plugin runs on -------------------------------------------------------

_STANDBY_JSON = None
_TGTD_DOWN = ("tgtadm: failed to send request hdr to tgt daemon, Transport endpoint is "
              "not connected\n")


def _standby_status_json():
    """drbdsetup's status of a connected, UpToDate Secondary (DRBD 9)."""
    global _STANDBY_JSON
    if _STANDBY_JSON is None:
        with io.open(os.path.join(plugin.REPO, "tests", "data", "drbd", "9-connected.json"),
                     encoding="utf-8") as handle:
            _STANDBY_JSON = handle.read().replace(u'"role": "Primary"', u'"role": "Secondary"')
    return _STANDBY_JSON


def canned_answer(tool, args):
    """``(returncode, stdout, stderr)`` of a standby host whose tgtd is down."""
    if tool == "drbdsetup" and args[:2] == ["status", "--json"]:
        return 0, _standby_status_json(), ""
    if tool == "drbdadm" and args[:1] == ["sh-dev"]:
        return 0, "/dev/drbd0\n", ""
    if tool == "drbdadm" and args[:1] == ["sh-ll-dev"]:
        return 0, "/dev/sdb\n", ""
    if tool == "tgtadm":
        return 107, "", _TGTD_DOWN
    if tool == "ip" and args[:1] == ["link"]:
        return 0, "2: xenbr0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500\n", ""
    if tool == "arping" and args == ["-V"]:
        return 0, "arping from iputils 20221126\n", ""
    return 0, "", ""


# The tool calls that only read the host (after the tool's path).
_READS = re.compile(r"^\S*/(drbdsetup (status|show) |drbdadm (sh-dev|sh-ll-dev|dump|role|"
                    r"cstate|dstate|status|--version)( |$)|tgtadm -C \d+ (--lld iscsi )?--mode "
                    r"(sys|target|conn) --op show|ip (-o -4 addr show|link show) |arping (-V$|-D ))")


def _reads(call):
    return bool(_READS.match(call))


class RecordedHost(object):
    """A sandbox directory with a config, and the tool calls the plugin made there."""

    _config_text = None

    def __init__(self):
        self.directory = tempfile.mkdtemp(prefix="iha-hostile-")
        self.calls = []
        self.config_path = os.path.join(self.directory, "iscsi-ha.conf")
        with io.open(self.config_path, "w", encoding="utf-8") as handle:
            handle.write(self.config_text(self.directory))

    @classmethod
    def config_text(cls, directory, bin_dir=None):
        if cls._config_text is None:
            # Rendered once (Jinja2 is slow), for a placeholder directory.
            cls._config_text = config_module.render_sample(
                drbd_version="9", duplicate_check="arping", replication_interface="xenbr0",
                tools=dict((tool, "@BIN@/" + tool) for tool in config_module.TOOLS),
                state_dir="@DIR@/state", run_dir="@DIR@/run", log_file="@DIR@/iscsi-ha.log",
                inventory="@DIR@/inventory", lvm_conf="@DIR@/lvm.conf",
                pool_conf="@DIR@/pool.conf",
                resources=[{"name": "r0", "device": "/dev/drbd0", "lun": 1,
                            "scsi_id": "1fa0c0de0001", "scsi_sn": "IHA-R0"}])
        return cls._config_text.replace("@BIN@", bin_dir or os.path.join(directory, "bin")) \
            .replace("@DIR@", directory)

    def close(self):
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    # -- in-process tools ------------------------------------------------------------

    def run(self, argv, timeout=20.0, check=True):
        argv = [str(a) for a in argv]
        self.calls.append(argv)
        returncode, stdout, stderr = canned_answer(os.path.basename(argv[0]), argv[1:])
        result = commands.Result(argv, returncode, stdout, stderr, 0.0)
        if check and returncode != 0:
            raise CommandFailed(argv, returncode, stdout, stderr)
        return result

    def spawn_detached(self, argv):
        self.calls.append([str(a) for a in argv])
        return 0

    # -- process tools ---------------------------------------------------------------

    def write_tools(self):
        """Shell scripts in ``bin/`` that log their argv to ``calls.log`` and answer as
        :func:`canned_answer` does, for the plugin run as a process."""
        bin_dir = os.path.join(self.directory, "bin")
        os.mkdir(bin_dir)
        answers = os.path.join(self.directory, "answers")
        os.mkdir(answers)
        log = os.path.join(self.directory, "calls.log")
        cases = {
            "drbdsetup": [("status --json*", canned_answer("drbdsetup", ["status", "--json"]))],
            "drbdadm": [("sh-dev *", canned_answer("drbdadm", ["sh-dev"])),
                        ("sh-ll-dev *", canned_answer("drbdadm", ["sh-ll-dev"]))],
            "tgtadm": [("*", canned_answer("tgtadm", []))],
            "ip": [("link *", canned_answer("ip", ["link"]))],
            "arping": [("-V", canned_answer("arping", ["-V"]))],
        }
        for tool in config_module.TOOLS:
            lines = [u"#!/bin/sh", u'printf "%%s\\n" "%s $*" >> %s' % (tool, log),
                     u'case "$*" in']
            for number, (pattern, (code, out, err)) in enumerate(cases.get(tool, [])):
                base = os.path.join(answers, "%s.%d" % (tool, number))
                for suffix, text in (("out", out), ("err", err)):
                    with io.open(base + "." + suffix, "w", encoding="utf-8") as handle:
                        handle.write(six.text_type(text))
                lines.append(u'%s) cat %s.out; cat %s.err >&2; exit %d;;'
                             % (pattern, base, base, code))
            lines += [u"esac", u"exit 0", u""]
            path = os.path.join(bin_dir, tool)
            with io.open(path, "w", encoding="utf-8") as handle:
                handle.write(u"\n".join(lines))
            os.chmod(path, 0o755)
        return log

    def process_calls(self):
        try:
            with io.open(os.path.join(self.directory, "calls.log"), encoding="utf-8") as log:
                return log.read().splitlines()
        except IOError:
            return []

    # -- what changed ----------------------------------------------------------------

    def files(self, ignore=()):
        """``{path: sha1}`` of every file the plugin could have made or changed."""
        found = {}
        for top in ("state", "run"):
            for root, dirs, names in os.walk(os.path.join(self.directory, top)):
                for name in dirs + names:
                    path = os.path.join(root, name)
                    relative = os.path.relpath(path, self.directory)
                    if relative in ignore:
                        continue
                    if os.path.isdir(path):
                        found[relative] = "directory"
                        continue
                    with open(path, "rb") as handle:
                        found[relative] = hashlib.sha1(handle.read()).hexdigest()
        for name in ("iscsi-ha.log", "iscsi-ha.conf"):
            path = os.path.join(self.directory, name)
            if os.path.exists(path) and name not in ignore:
                with open(path, "rb") as handle:
                    found[name] = hashlib.sha1(handle.read()).hexdigest()
        return found

    def changes(self):
        """:meth:`state` without what reading the host leaves: its queries, the log,
        and the lock file every action takes."""
        state = self.state()
        return {"files": dict((k, v) for k, v in state["files"].items()
                              if k not in ("iscsi-ha.log", "run/action.lock")),
                "calls": [call for call in state["calls"] if not _reads(call)]}

    def state(self):
        """Files and tool calls, the sandbox's own path written @DIR@."""
        calls = [" ".join(argv) for argv in self.calls] + self.process_calls()
        return {"files": self.files(),
                "calls": [call.replace(self.directory, "@DIR@") for call in calls]}


# -- the plugin entry, in this process --------------------------------------------------

class _Patched(object):
    """commands.run/spawn_detached on ``host``, ISCSI_HA_CONF at its config, a fresh log."""

    def __init__(self, host, argv1):
        self.host = host
        self.argv1 = argv1

    def __enter__(self):
        self.saved = (commands.run, commands.spawn_detached, sys.argv, sys.stdout,
                      os.environ.get(config_module.PATH_VARIABLE))
        commands.run, commands.spawn_detached = self.host.run, self.host.spawn_detached
        sys.argv = [plugin.PLUGIN, self.argv1]
        sys.stdout = six.StringIO()
        os.environ[config_module.PATH_VARIABLE] = self.host.config_path
        _drop_log_handlers()
        return sys.stdout

    def __exit__(self, *exc_info):
        _drop_log_handlers()
        (commands.run, commands.spawn_detached, sys.argv, sys.stdout, conf) = self.saved
        if conf is None:
            os.environ.pop(config_module.PATH_VARIABLE, None)
        else:
            os.environ[config_module.PATH_VARIABLE] = conf


def _drop_log_handlers():
    """Each call logs to its own host's file, as each plugin process does."""
    import logging
    logger = logging.getLogger("iscsi-ha")
    for handler in logger.handlers[:]:
        logger.removeHandler(handler)
        handler.close()


class Outcome(object):
    """What the entry printed (``reply``: the decoded struct) or how it ended."""

    def __init__(self, reply=None, protocol_error=None, stdout=""):
        self.reply = reply
        self.protocol_error = protocol_error  # the exception that ended the process
        self.stdout = stdout

    @property
    def code(self):
        if self.reply is None or self.reply.get("Status") != "Failure":
            return None
        return self.reply["ErrorDescription"][0]

    def __repr__(self):
        return "Outcome(%r, %r)" % (self.reply, self.protocol_error)


def _ensure_importable():
    for directory in (plugin.XENAPIPLUGIN_DIR, os.path.join(plugin.REPO, "plugins")):
        if directory not in sys.path:
            sys.path.insert(0, directory)


def run_entry(host, argv1):
    """The plugin file run as ``__main__`` with ``argv1``, in this process, on ``host``.

    An exception out of the entry is what ends a plugin process with a traceback
    and a non-zero exit, which xapi reports as XENAPI_PLUGIN_FAILURE.
    """
    _ensure_importable()
    with _Patched(host, argv1) as out:
        try:
            runpy.run_path(plugin.PLUGIN, run_name="__main__")
        except (Exception, SystemExit) as exc:  # pylint: disable=broad-except
            return Outcome(protocol_error=exc, stdout=out.getvalue())
        printed = out.getvalue()
    (reply,), _ = xmlrpc_client.loads(printed)
    return Outcome(reply, stdout=printed)


def request(fn, args):
    return xmlrpc_client.dumps((SESSION, args), fn, allow_none=True)


# -- the whole suite, for `make faults` ------------------------------------------------

SUITE = ["tests/test_hostile_plugin.py", "tests/test_hostile_config.py",
         "tests/test_hostile_xapi.py"]


def run_suite(profile_name="faults", seed=None, python=None, json_path=None):
    """Run :data:`SUITE` under a profile in a pytest process; returns the count record
    (``hostile_examples``, ``tests``) with ``passed`` and ``seed`` added."""
    import subprocess
    handle, path = tempfile.mkstemp(prefix="iha-hostile-count-", suffix=".json")
    os.close(handle)
    try:
        env = dict(os.environ)
        env.update({PROFILE_VARIABLE: profile_name, COUNT_VARIABLE: path})
        argv = [python or sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        if seed is not None:
            argv.append("--hypothesis-seed=%d" % seed)
        code = subprocess.call(argv + SUITE, cwd=plugin.REPO, env=env)
        with open(path) as count:
            record = json.load(count)
    finally:
        os.remove(path)
    record.update(passed=code == 0, seed=seed)
    if json_path:
        with open(json_path, "w") as out:
            json.dump(record, out, indent=2, sort_keys=True)
            out.write("\n")
    return record


def main(argv=None):
    """``python -m tests.support.hostile [--profile ci|faults] [--seed N] [--python PATH]
    [--json FILE]``: the hostile-input suite; its last line says how many examples ran."""
    import argparse
    parser = argparse.ArgumentParser(prog="python -m tests.support.hostile",
                                     description=main.__doc__.split(":", 1)[1].strip())
    parser.add_argument("--profile", choices=sorted(PROFILES), default="faults")
    parser.add_argument("--seed", type=int, help="hypothesis seed (default: random)")
    parser.add_argument("--python", help="interpreter to run the tests on")
    parser.add_argument("--json", dest="json_path", metavar="FILE",
                        help="write {hostile_examples, tests, passed, seed, profile}")
    options = parser.parse_args(argv)
    record = run_suite(options.profile, options.seed, options.python, options.json_path)
    sys.stdout.write("hostile input: %d examples, %s (profile %s%s)\n" % (
        record["hostile_examples"], "passed" if record["passed"] else "FAILED",
        record["profile"], ", seed %d" % options.seed if options.seed is not None else ""))
    return 0 if record["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
