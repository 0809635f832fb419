"""Run the iscsi-ha plugin file the way xapi does, and decode its answer."""

import os
import subprocess
import sys

try:
    import xmlrpclib as xmlrpc_client
except ImportError:  # Python 3
    import xmlrpc.client as xmlrpc_client

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PLUGIN = os.path.join(REPO, "plugins", "iscsi-ha")
XENAPIPLUGIN_DIR = os.path.join(REPO, "tests", "xapi_plugin")


class PluginReply(object):
    """The decoded methodResponse plus what the process wrote to stderr."""

    def __init__(self, status, value, error, stdout, stderr):
        self.status = status
        self.value = value
        self.error = error  # ErrorDescription list on failure
        self.stdout = stdout
        self.stderr = stderr

    @property
    def ok(self):
        return self.status == "Success"


def plugin_env(config_path=None, extra=None):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([XENAPIPLUGIN_DIR, os.path.join(REPO, "plugins")])
    if config_path:
        env["ISCSI_HA_CONF"] = config_path
    env.update(extra or {})
    return env


def request(fn, args):
    """The methodCall xapi passes as argv[1]: params (session ref, args dict)."""
    return xmlrpc_client.dumps(("OpaqueRef:test-session", dict(args)), fn)


class Finished(object):
    """A plugin process's exit code and output, undecoded."""

    def __init__(self, returncode, raw, stderr):
        self.returncode = returncode
        self.raw = raw
        self.stdout = raw.decode("utf-8", "replace")
        self.stderr = stderr.decode("utf-8", "replace")

    def __repr__(self):
        return "Finished(%r, %r, %r)" % (self.returncode, self.stdout, self.stderr)


def run(argv1, env=None, python=None):
    """Execute the plugin with any ``argv1``, as xapi would; nothing is decoded."""
    process = subprocess.Popen([python or sys.executable, PLUGIN, argv1],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=env or plugin_env())
    raw, stderr = process.communicate()
    return Finished(process.returncode, raw, stderr)


def decode(stdout):
    """The struct of the methodResponse a plugin printed (bytes, as printed)."""
    (reply,), _ = xmlrpc_client.loads(stdout)
    return reply


def call(fn, args=None, config_path=None, python=None, netns=None, env=None):
    """Execute the plugin with argv[1] = methodCall(fn, (session, args))."""
    argv = [python or sys.executable, PLUGIN, request(fn, args or {})]
    if netns:
        argv = ["ip", "netns", "exec", netns] + argv
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=env or plugin_env(config_path))
    raw, stderr = process.communicate()
    stdout, stderr = raw.decode("utf-8"), stderr.decode("utf-8")
    assert process.returncode == 0, "plugin exited %d: %s%s" % (process.returncode, stdout,
                                                                  stderr)
    reply = decode(raw)
    return PluginReply(reply["Status"], reply.get("Value"), reply.get("ErrorDescription"),
                       stdout, stderr)
