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
    handler.setFormatter(logging.Formatter(_FORMAT))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return logger
