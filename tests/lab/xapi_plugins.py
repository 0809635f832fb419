"""Host plugins run the way xapi runs them, for the XAPI simulator (Python 3 only).

Owns: finding a plugin (only a file listed in the host's plugin directory, as
xapi's ``find_plugin``), running it the way xapi's forkexecd does (the file
itself, executed through its first line, with one argument, the XML-RPC
methodCall; only ``PATH=/sbin:/usr/sbin:/bin:/usr/bin`` in the environment,
``/`` as working directory, stdin from /dev/null, its own session; no timeout),
inside the host's network namespace through ``ip netns exec`` (which also
bind-mounts the host's files under ``/etc/netns/<namespace>/`` over ``/etc``),
and what xapi makes of the outcome (:func:`plugin_result`).

Nothing here knows about hosts dying or sessions: the simulator decides when a
run's outcome still reaches the caller, and kills runs whose host died.
"""

import os
import signal
import subprocess
import threading
import xmlrpc.client

from .xapi_db import XapiFailure
from .xapi_listeners import MALFORMED_XMLRPC

# forkexecd's default environment: the only variable a plugin gets.
PLUGIN_ENVIRONMENT = {"PATH": "/sbin:/usr/sbin:/bin:/usr/bin"}
PLUGIN_CWD = "/"


def find_plugin(plugin_dir, name):
    """The plugin's path, or XENAPI_MISSING_PLUGIN: no paths, no "..", only listed files."""
    try:
        available = os.listdir(plugin_dir)
    except OSError:
        available = []
    if name not in available:
        raise XapiFailure("XENAPI_MISSING_PLUGIN", name)
    return os.path.join(plugin_dir, name)


class PluginRun(object):
    """One plugin process; ``on_done(run)`` is called (from another thread) once it has ended."""

    def __init__(self, path, session_ref, fn, args, netns, ip_tool, on_done):
        request = xmlrpc.client.dumps((session_ref, args), fn)
        argv = [path, request]
        if netns:
            argv = [ip_tool, "netns", "exec", netns] + argv
        self.returncode = None
        self.stdout = self.stderr = ""
        self.done = False
        self._on_done = on_done
        try:
            self._process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, env=dict(PLUGIN_ENVIRONMENT), cwd=PLUGIN_CWD,
                start_new_session=True)
        except OSError as exc:
            # What forkexecd reports for a file it cannot execute.
            raise XapiFailure("XENAPI_PLUGIN_FAILURE", "non-zero exit", "", str(exc)) from None
        threading.Thread(target=self._collect, name="plugin " + fn, daemon=True).start()

    def _collect(self):
        stdout, stderr = self._process.communicate()
        self.stdout = stdout.decode("utf-8", "replace")
        self.stderr = stderr.decode("utf-8", "replace")
        self.returncode = self._process.returncode
        self.done = True
        self._on_done(self)

    def kill(self):
        """Kill the plugin's whole session, as the death of its host does."""
        if self._process.poll() is None:
            try:
                os.killpg(self._process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def result(self):
        return plugin_result(self.returncode, self.stdout, self.stderr)


def plugin_result(returncode, stdout, stderr):
    """What xapi makes of a finished plugin: its Value, or the XapiFailure to raise."""
    if returncode < 0:
        raise XapiFailure("XENAPI_PLUGIN_FAILURE",
                          "signal: %s" % signal.Signals(-returncode).name, stdout, stderr)
    if returncode > 0:
        raise XapiFailure("XENAPI_PLUGIN_FAILURE", "non-zero exit", stdout, stderr)
    try:
        params, method = xmlrpc.client.loads(stdout)
    except xmlrpc.client.Fault as fault:
        raise XapiFailure("XENAPI_PLUGIN_FAILURE", "fault", fault.faultCode,
                          fault.faultString) from None
    except MALFORMED_XMLRPC as exc:
        raise XapiFailure("XENAPI_PLUGIN_FAILURE", "failed to parse plugin output", stdout,
                          exc) from None
    response = params[0] if method is None and len(params) == 1 else None
    if isinstance(response, dict):
        if response.get("Status") == "Success" and isinstance(response.get("Value"), str):
            return response["Value"]
        description = response.get("ErrorDescription")
        if (response.get("Status") == "Failure" and isinstance(description, list)
                and description and all(isinstance(item, str) for item in description)):
            raise XapiFailure(*description)
    raise XapiFailure("XENAPI_PLUGIN_FAILURE", "unexpected XMLRPC result", stdout)
