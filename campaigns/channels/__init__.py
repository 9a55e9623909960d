"""Channels: one module per way of reaching someone, behind one Protocol (:mod:`.base`),
listed in :mod:`.registry`."""
