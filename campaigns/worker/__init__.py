"""What ``worker.py`` runs, at the edge beside the web app: the RQ jobs (:mod:`.jobs`), plain
functions RQ imports by name, and their schedule for RQ's cron scheduler (:mod:`.cron`).

The jobs build their engine with the composition root (:func:`campaigns.services.build`),
which sits below this package; the engine knows nothing of RQ's jobs, only of the
``dispatch`` callable the root hands it.
"""
