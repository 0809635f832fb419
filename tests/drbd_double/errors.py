"""What can go wrong in the DRBD double: its own errors and the simulated kernel's refusals.

Owns the drbd.h return codes the double emulates, with the message text the
kernel sends for each, and the exit code of a request the double cannot honour.
"""

# drbd.h return codes: errors are > 100, refused state changes < 0.
ERR_CODE_BASE = 100
ERR_DISCARD_IMPOSSIBLE = 123
ERR_NET_CONFIGURED = 125
ERR_MINOR_INVALID = 127
ERR_RES_NOT_KNOWN = 158
ERR_MINOR_OR_VOLUME_EXISTS = 161
ERR_INVALID_REQUEST = 162
SS_TWO_PRIMARIES = -1
SS_NO_UP_TO_DATE_DISK = -2
SS_DEVICE_IN_USE = -12
MESSAGES = {
    ERR_DISCARD_IMPOSSIBLE: "--discard-my-data not allowed when primary.",
    ERR_NET_CONFIGURED: "Device has a net-config (use disconnect first)",
    ERR_MINOR_INVALID: "Device minor not allocated",
    ERR_RES_NOT_KNOWN: "Unknown resource",
    ERR_MINOR_OR_VOLUME_EXISTS: "Minor or volume exists already (delete it first)",
    ERR_INVALID_REQUEST: "Invalid configuration request",
    SS_TWO_PRIMARIES: "Multiple primaries not allowed by config",
    SS_NO_UP_TO_DATE_DISK: "Need access to UpToDate data",
    SS_DEVICE_IN_USE: "Device is held open by someone",
}
E_DOUBLE = 20  # what drbdsetup uses for "could not even ask the kernel"


class Refusal(Exception):
    """The simulated kernel said no: ``code`` is a key of MESSAGES."""

    def __init__(self, code, info=()):
        Exception.__init__(self, MESSAGES[code])
        self.code = code
        self.info = list(info)


class DoubleError(Exception):
    """A request the double cannot honour (bad admin input, unemulated option)."""
