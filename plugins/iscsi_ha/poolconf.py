"""xapi's record of this host's pool role, ``[host] pool_conf`` (/etc/xensource/pool.conf).

xapi writes ``master``, or ``slave:ADDRESS`` naming the master it follows. The
plugin reports the role (two hosts saying "master" is a split pool, where no
host may be promoted); the controller watches it to wake up when its host
becomes master.
"""

import io


def read(path):
    """``("master", None)``, ``("slave", master address)``, or ``(None, None)`` when the
    file is missing or says neither."""
    try:
        with io.open(path, encoding="utf-8") as handle:
            text = handle.read().strip()
    except (IOError, OSError, UnicodeError):
        return None, None
    role, _, address = text.partition(":")
    if role == "master":
        return "master", None
    if role == "slave" and address:
        return "slave", address
    return None, None
