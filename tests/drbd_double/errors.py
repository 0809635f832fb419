"""What can go wrong in the DRBD double: its own errors and the simulated kernel's refusals.

Owns the drbd.h return codes the double emulates, with the message text the
kernel sends for each (drbd-headers ``drbd_strings.c``), and the exit codes
drbdsetup turns them into (drbd-utils ``drbdsetup.c`` ``check_error``).
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
SS_CONNECTED_OUTDATES = -6
SS_PRIMARY_NOP = -7
SS_DEVICE_IN_USE = -12
SS_LOWER_THAN_OUTDATED = -16
SS_PRIMARY_READER = -22
MESSAGES = {
    ERR_DISCARD_IMPOSSIBLE: "--discard-my-data not allowed when primary.",
    ERR_NET_CONFIGURED: "Device has a net-config (use disconnect first)",
    ERR_MINOR_INVALID: "Device minor not allocated",
    ERR_RES_NOT_KNOWN: "Unknown resource",
    ERR_MINOR_OR_VOLUME_EXISTS: "Minor or volume exists already (delete it first)",
    ERR_INVALID_REQUEST: "Invalid configuration request",
    SS_TWO_PRIMARIES: "Multiple primaries not allowed by config",
    SS_NO_UP_TO_DATE_DISK: "Need access to UpToDate data",
    SS_CONNECTED_OUTDATES: "Refusing to be Outdated while Connected",
    SS_PRIMARY_NOP: "Refusing to be Primary while peer is not outdated",
    SS_DEVICE_IN_USE: "Device is held open by someone",
    SS_LOWER_THAN_OUTDATED: "Disk state is lower than outdated",
    SS_PRIMARY_READER: "Peer may not become primary while device is opened read-only",
}
E_DOUBLE = 20  # what drbdsetup uses for "could not even ask the kernel"
# drbdsetup's special exit codes for refused state changes; any other refusal is 11.
REFUSAL_EXIT_CODES = {SS_NO_UP_TO_DATE_DISK: 17, SS_LOWER_THAN_OUTDATED: 5}


def refusal_exit_code(code):
    """drbdsetup's exit code for the kernel's answer ``code``."""
    if code > ERR_CODE_BASE:
        return 10
    return REFUSAL_EXIT_CODES.get(code, 11)


class Refusal(Exception):
    """The simulated kernel said no: ``code`` is a key of MESSAGES."""

    def __init__(self, code, info=()):
        Exception.__init__(self, MESSAGES[code])
        self.code = code
        self.info = list(info)


class DoubleError(Exception):
    """A request the double cannot honour (bad admin input, unemulated option)."""
