"""The host log: every state change with its reason, in the configured log file."""

import logging
import logging.handlers
import os

_FORMAT = "%(asctime)s %(process)d %(levelname)s %(message)s"


def configure(log_file):
    """Send the ``iscsi-ha`` logger to ``log_file`` (once per process).

    A log that cannot be opened must not stop an action, so it falls back to
    stderr, which xapi records in its own log.
    """
    logger = logging.getLogger("iscsi-ha")
    if logger.handlers:
        return logger
    try:
        directory = os.path.dirname(log_file)
        if directory and not os.path.isdir(directory):
            os.makedirs(directory)
        handler = logging.handlers.RotatingFileHandler(log_file, maxBytes=5 * 1024 * 1024,
                                                       backupCount=3, encoding="utf-8")
    except (IOError, OSError):
        handler = logging.StreamHandler()
    handler.setFormatter(_OneLineFormatter(_FORMAT))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return logger


class _OneLineFormatter(logging.Formatter):
    """Each message on one line: a reason or name holding a line break (any caller
    of the plugin can pass one) must not forge a log line of its own. A logged
    traceback still follows on lines of its own."""

    def format(self, record):
        saved = record.msg, record.args
        record.msg = record.getMessage().replace("\r", "\\r").replace("\n", "\\n")
        record.args = ()
        try:
            return logging.Formatter.format(self, record)
        finally:
            record.msg, record.args = saved
