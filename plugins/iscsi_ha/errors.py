"""Every error iscsi-ha reports, each with a stable code.

The plugin entry maps an :class:`IscsiHaError` to ``XenAPIPlugin.Failure(code,
[message] + details)``; scripts match on the code, people read the message.
"""

import six


class IscsiHaError(Exception):
    """Base class: ``code`` is stable, ``message`` says what happened and the fix."""

    code = "ISCSI_HA_ERROR"

    def __init__(self, message, details=None):
        Exception.__init__(self, message)
        self.message = message
        self.details = list(details or [])

    def params(self):
        """The strings that follow the code in a XAPI ErrorDescription."""
        return [self.message] + [six.text_type(d) for d in self.details]


class BadArgument(IscsiHaError):
    code = "ISCSI_HA_BAD_ARGUMENT"


class BadConfig(IscsiHaError):
    code = "ISCSI_HA_BAD_CONFIG"


class Busy(IscsiHaError):
    code = "ISCSI_HA_BUSY"


class ToolMissing(IscsiHaError):
    code = "ISCSI_HA_TOOL_MISSING"


class CommandFailed(IscsiHaError):
    """An external tool exited non-zero or timed out."""

    code = "ISCSI_HA_COMMAND_FAILED"

    def __init__(self, argv, returncode, stdout, stderr, timed_out=False):
        output = (stderr or stdout or "").strip()
        if timed_out:
            what = "timed out"
        else:
            what = "exited with code %s" % returncode
        message = "%s %s%s" % (" ".join(argv), what, (": " + output) if output else "")
        IscsiHaError.__init__(self, message)
        self.argv = list(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.timed_out = timed_out


class PeerPrimary(IscsiHaError):
    code = "ISCSI_HA_PEER_PRIMARY"


class PeerUnknown(IscsiHaError):
    """Replication is down and nothing confirms the peer is outdated or gone."""

    code = "ISCSI_HA_PEER_UNKNOWN"


class DiskNotUpToDate(IscsiHaError):
    code = "ISCSI_HA_DISK_NOT_UPTODATE"


class VipInUse(IscsiHaError):
    code = "ISCSI_HA_VIP_IN_USE"


class TargetDaemonDown(IscsiHaError):
    code = "ISCSI_HA_TARGET_DAEMON_DOWN"


class DrbdError(IscsiHaError):
    code = "ISCSI_HA_DRBD_ERROR"


class TargetError(IscsiHaError):
    code = "ISCSI_HA_TARGET_ERROR"


class VipError(IscsiHaError):
    code = "ISCSI_HA_VIP_ERROR"


class StepFailed(IscsiHaError):
    """A promote/demote step failed; earlier steps were rolled back."""

    code = "ISCSI_HA_STEP_FAILED"


class VictimServing(IscsiHaError):
    """The host chosen to discard its copy in a split brain still serves it."""

    code = "ISCSI_HA_VICTIM_SERVING"
