"""iscsi-ha: highly available iSCSI storage for two-host XenServer / XCP-ng pools.

This package is the host library behind the dom0 XAPI plugin ``iscsi-ha``.
"""

__version__ = "0.1.0"
