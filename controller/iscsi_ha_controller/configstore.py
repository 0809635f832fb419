"""The config's backup in the pool database: ``iscsi-ha config backup|restore``.

Owns the pool ``other_config`` key :data:`KEY` (a JSON record: the config's
text, its pool-wide digest, where and when it was taken), what may go in it
(a valid config, at most :data:`MAX_BYTES`, no secret: the config names password
*files*, and a password pasted into it anyway is refused), bringing it back to
a host through that host's plugin (fn ``install-files``, kind ``config``, the
way ``iscsi-ha setup`` installs files; a rebuilt host without any config takes
it too), and how each host's config compares with it (``status``).

The backup is one host's file, host-local keys included: a host rebuilt
alike takes it unchanged; edit the host-local keys of one built otherwise.
"""

import io
import json
import time

import six

KEY = "iscsi-ha.config"
# xapi keeps the pool record on every host and sends it with every pool event;
# the commented sample is about 10 KiB.
MAX_BYTES = 32 * 1024
NO_BACKUP = "ISCSI_HA_NO_CONFIG_BACKUP"
BACKUP_REFUSED = "ISCSI_HA_CONFIG_BACKUP_REFUSED"


def check(text, config):
    """Why ``text`` (the file ``config`` was read from) may not go into the pool, or None."""
    size = len(text.encode("utf-8"))
    if size > MAX_BYTES:
        return ("%s is %d bytes, more than the %d the pool database takes; shorten its "
                "comments" % (config.path, size, MAX_BYTES))
    for setting, path in (("[xapi] password_file", config.xapi_password_file),
                          ("[alerts] smtp_password_file", config.alerts.smtp_password_file)):
        secret = _first_line(path)
        if secret and secret in text:
            return ("%s holds the password of %s (%s); remove it from the config (the file "
                    "keeps it) and back up again" % (config.path, setting, path))
    return None


def _first_line(path):
    if not path:
        return None
    try:
        with io.open(path, encoding="utf-8", errors="replace") as handle:
            return handle.readline().strip() or None
    except (IOError, OSError):
        return None  # not readable here: nothing to compare with


def record(text, config, host_name, now=None):
    return {"text": text, "digest": config.digest(), "path": config.path,
            "host": host_name, "at": time.time() if now is None else now}


def stored(other_config):
    """The pool's backup record, or None (also for a value that is no record)."""
    try:
        value = json.loads(other_config[KEY])
    except (KeyError, ValueError):
        return None
    if isinstance(value, dict) and isinstance(value.get("text"), six.string_types):
        return value
    return None


def comparison(backup, hosts):
    """``{"digest", "host", "at", "matches": {host: True|False|None}}`` or None: each
    host's config digest (from its status; None: no status) against the backup's."""
    if backup is None:
        return None
    return {"digest": backup.get("digest"), "host": backup.get("host"),
            "at": backup.get("at"),
            "matches": dict((h.name, (h.status.get("config_digest") == backup.get("digest"))
                             if h.answered else None) for h in hosts)}


def line(compared, when):
    """The ``config backup:`` line of ``iscsi-ha status``."""
    if compared is None:
        return "none in the pool (`iscsi-ha config backup` takes one)"
    differ = sorted(name for name, same in compared["matches"].items() if same is False)
    unknown = sorted(name for name, same in compared["matches"].items() if same is None)
    text = "taken %s from %s (digest %s): " % (when(compared["at"]), compared["host"],
                                               compared["digest"])
    if differ:
        text += ("%s DIFFER%s (`iscsi-ha config restore HOST`, or back up again)"
                 % (", ".join(differ), "S" if len(differ) == 1 else ""))
    else:
        text += "every host matches"
    if unknown:
        text += "; %s unknown (no status)" % ", ".join(unknown)
    return text


def read_local(config):
    """The text of the config this command runs with."""
    with io.open(config.path, encoding="utf-8") as handle:
        return handle.read()
