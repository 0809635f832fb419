"""DRBD's names for roles, disk states and connections, as the double stores them.

The disk states are DRBD's own; ``KNOWN_STALE`` are the peer disk states a host
can know without a connection (a fence-peer verdict or the last one seen).
"""

PRIMARY, SECONDARY = "Primary", "Secondary"
UP_TO_DATE, CONSISTENT = "UpToDate", "Consistent"
OUTDATED, INCONSISTENT = "Outdated", "Inconsistent"
DUNKNOWN = "DUnknown"
KNOWN_STALE = (INCONSISTENT, OUTDATED)
CONNECTED, CONNECTING, STANDALONE = "connected", "connecting", "standalone"
DATA_DIR = "data"
BLOCK = 4096
