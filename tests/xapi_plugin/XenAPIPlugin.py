"""Test-only stand-in for dom0's XenAPIPlugin module (it is not on PyPI).

It follows the protocol xapi uses to run a host plugin: argv[1] is an XML-RPC
methodCall whose method name is the plugin function and whose params are
(session_ref, args_dict); the plugin prints one XML-RPC methodResponse holding a
struct with Status Success/Value or Failure/ErrorDescription.
"""

import sys

try:
    import xmlrpclib as xmlrpc_client
except ImportError:  # Python 3
    import xmlrpc.client as xmlrpc_client


class Failure(Exception):
    """Raised by a plugin function; becomes ErrorDescription [code] + params."""

    def __init__(self, code, params):
        Exception.__init__(self)
        self.params = [code] + params

    def __str__(self):
        return str(self.params)


class SessionRef(object):
    """What a plugin function receives as its session.

    dom0's module hands over a local XenAPI session carrying the caller's session
    ref; this stand-in keeps just the ref, which is all iscsi-ha's host functions
    need."""

    def __init__(self, handle):
        self.handle = handle


def success_message(result):
    return xmlrpc_client.dumps(({"Status": "Success", "Value": result},), "", True)


def failure_message(description):
    return xmlrpc_client.dumps(({"Status": "Failure", "ErrorDescription": description},),
                               "", True)


def dispatch(fn_table):
    if len(sys.argv) != 2:
        raise SystemExit("usage: %s <XML-RPC methodCall>" % sys.argv[0])
    params, methodname = xmlrpc_client.loads(sys.argv[1])
    session, args = params[0], params[1]
    if methodname not in fn_table:
        print(failure_message(["UNKNOWN_XENAPI_PLUGIN_FUNCTION", methodname]))
        return
    try:
        result = fn_table[methodname](SessionRef(session), args)
        print(success_message(result))
    except SystemExit:
        raise
    except Failure as failure:
        print(failure_message(failure.params))
    except Exception as exc:  # xapi reports any other exception this way
        print(failure_message(["XENAPI_PLUGIN_FAILURE", methodname,
                               exc.__class__.__name__, str(exc)]))
