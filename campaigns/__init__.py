"""campaigns: journeys and email orchestration for customer-success teams.

The package is the engine. ``web.py``, ``worker.py`` and :mod:`campaigns.cli` wire it
to HTTP, RQ and the terminal; nothing here imports Flask or click except those edges.
"""

__version__ = "0.1.0"
