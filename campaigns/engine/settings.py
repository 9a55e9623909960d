"""The engine's settings: batch and lease sizes, the frequency cap, the webhook secret, the
global control group, the consent rules.

Built from the configuration by the composition root (:mod:`campaigns.services`); tests
build their own.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from datetime import timedelta

from campaigns import defaults
from campaigns.config import ConsentRules, parse_consent_rules
from campaigns.currency import DEFAULT as DEFAULT_CURRENCIES
from campaigns.currency import Currencies


@dataclass(frozen=True)
class EngineSettings:
    send_batch: int = defaults.SEND_BATCH
    lease: timedelta = timedelta(seconds=defaults.LEASE_SECONDS)
    max_unfinished_runs: int = defaults.MAX_UNFINISHED_RUNS
    heartbeat: bool = True  # off where time is fake and sessions share one connection (simulate)
    dry_run: bool = False  # channels with an outside effect are recording stand-ins (simulate)
    frequency_cap: int = 3
    frequency_period: timedelta = timedelta(days=7)
    webhook_secret: str = ""
    currencies: Currencies = DEFAULT_CURRENCIES  # journey conditions compare amounts in its base
    global_control: float = 0.0  # the share (0 to 1) of subjects in the global control group
    task_time_zone: str = "UTC"  # business days of SLAs and the digest hour are read in it
    task_digest_hour: int = defaults.TASK_DIGEST_HOUR  # the hour daily task digests go at
    # Which consent bases let marketing mail go, per country (campaigns.engine.consent).
    consent_rules: ConsentRules = field(default_factory=lambda: parse_consent_rules(None))
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
