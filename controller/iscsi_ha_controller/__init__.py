"""iscsi-ha's controller: the storage follows the pool master, driven through XAPI only.

``decide`` is the pure decision, ``observe`` the XAPI side, ``daemon`` the loop,
``alerts`` the XAPI messages and e-mail, ``main`` the daemon's command line.
"""
