"""A stand-in for dom0's ``xe`` command, just enough for ``xe-helpers/`` (Python 3).

    python3 -m tests.lab.xe -s URL -u USER -pw PASSWORD COMMAND [key=value ...]

Commands: ``host-list [--minimal]``, ``host-param-get uuid= param-name=``,
``host-call-plugin host-uuid= plugin= fn= [args:KEY=VALUE ...]``. Like xe, it
talks XenAPI to the pool master and prints a failure as ``Error code:`` and
``Error parameters:`` lines with exit code 1.
"""

import sys

import XenAPI

PARAMS = {"name-label": "name_label", "address": "address", "uuid": "uuid"}


class Usage(Exception):
    pass


def parse(argv):
    connection, words = {}, []
    argv = list(argv)
    while argv:
        word = argv.pop(0)
        if word in ("-s", "-u", "-pw"):
            if not argv:
                raise Usage("%s needs a value" % word)
            connection[word] = argv.pop(0)
        else:
            words.append(word)
    if not words or set(connection) != {"-s", "-u", "-pw"}:
        raise Usage("usage: xe -s URL -u USER -pw PASSWORD COMMAND [key=value ...]")
    command, flags, params, plugin_args = words[0], set(), {}, {}
    for word in words[1:]:
        if word.startswith("--"):
            flags.add(word)
            continue
        key, equals, value = word.partition("=")
        if not equals:
            raise Usage("expected key=value, got %r" % word)
        if key.startswith("args:"):
            plugin_args[key[len("args:"):]] = value
        else:
            params[key] = value
    return connection, command, flags, params, plugin_args


def run(session, command, flags, params, plugin_args):
    api = session.xenapi
    if command == "host-list":
        uuids = [api.host.get_uuid(ref) for ref in api.host.get_all()]
        return ",".join(uuids) if "--minimal" in flags else "\n".join(
            "uuid ( RO)    : %s" % uuid for uuid in uuids)
    if command == "host-param-get":
        host = api.host.get_by_uuid(params["uuid"])
        return str(api.host.get_record(host)[PARAMS[params["param-name"]]])
    if command == "host-call-plugin":
        host = api.host.get_by_uuid(params["host-uuid"])
        return api.host.call_plugin(host, params["plugin"], params["fn"], plugin_args)
    raise Usage("unknown command %s" % command)


def main(argv=None):
    try:
        connection, command, flags, params, plugin_args = parse(
            sys.argv[1:] if argv is None else argv)
        session = XenAPI.Session(connection["-s"])
        session.xenapi.login_with_password(connection["-u"], connection["-pw"], "2.0", "xe")
        try:
            sys.stdout.write(run(session, command, flags, params, plugin_args) + "\n")
        finally:
            session.xenapi.session.logout()
    except Usage as exc:
        sys.stderr.write("%s\n" % exc)
        return 2
    except XenAPI.Failure as failure:
        details = failure.details
        sys.stdout.write("Error code: %s\nError parameters: %s\n"
                         % (details[0], ", ".join(str(d) for d in details[1:])))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
