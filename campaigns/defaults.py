"""Named defaults. Every setting in :mod:`campaigns.config` falls back to one of these."""

DATABASE_URL = "sqlite:///campaigns.db"
"""A SQLite file (WAL mode) in the working folder when ``DATABASE_URL`` is unset."""

MAIL_URL = "file:///./outbox"
"""An outbox of ``.eml`` files when ``MAIL_URL`` is unset."""

BASE_URL = "http://127.0.0.1:5000"
"""The public address put into tracking links."""

DEFAULT_LOCALE = "en"
"""Locale of a contact whose locale is unknown, and of templates without a translation."""

DEFAULT_TIME_ZONE = "UTC"
"""Time zone of a contact whose time zone is unknown."""

IMPORT_BATCH_SIZE = 2_000
"""Rows per upsert statement when importing CSV files (memory stays flat on big files)."""

IMPORT_COPY_BATCH_SIZE = 20_000
"""Rows per COPY into the staging table and upsert from it when importing CSV files into
PostgreSQL: bigger batches cost fewer statements; memory holds one batch of checked rows."""

JOURNEYS_DIR = "journeys"
"""Where journey files and ``segments.yaml`` live, relative to the working folder."""

TEMPLATES_DIR = "templates"
"""Where MJML and text templates live, relative to the working folder."""

SEGMENTS_FILE = "segments.yaml"
SCORECARDS_FILE = "scorecards.yaml"
"""The health scorecards, beside the segments file (docs/health.md); optional."""
"""The segment and tier definitions, inside :data:`JOURNEYS_DIR`."""

LOCALES = ("en", "ja")
"""Locales the shipped templates and pages are written in."""

MAIL_FROM = "Customer Success <cs@example.com>"
"""The sender of journey emails when ``MAIL_FROM`` is unset."""

FREQUENCY_CAP = 3
"""At most this many marketing emails per contact per :data:`FREQUENCY_DAYS`
(``FREQUENCY_CAP=3/7d``)."""

FREQUENCY_DAYS = 7

SEND_BATCH = 100
"""Enrollments a worker advances together (``SEND_BATCH``): their emails are marked
"sending" in one commit and sent over one connection, so a crashed worker may resend at
most this many messages (each under its own Message-ID). 1 sends one at a time."""

LEASE_SECONDS = 30
"""How long a worker's claim on a send batch holds without renewal (``LEASE_SECONDS``). The
worker renews it every quarter of that while it works, so only a dead, hung or cut-off
worker loses it; its enrollments are taken over about this long after it stopped."""

MAX_UNFINISHED_RUNS = 3
"""An enrollment whose run did not finish this many times in a row (each time its worker
died, hung or lost its lease while running it) is marked failed instead of run again."""

JOB_TIMEOUT = 600
"""RQ's hard limit on one job, in seconds (``JOB_TIMEOUT``). It only fires on a hang: an
advance job stops taking new sends after :data:`JOB_BUDGET_SECONDS` (at most half of this)
and hands what is left to a fresh job."""

JOB_BUDGET_SECONDS = 60
"""How long an advance job works before it hands over to a fresh one: short, so the
scheduler's jobs and a warm shutdown never wait long behind it."""

DISPATCH_SECONDS = 10
"""How often the scheduler checks for due work that no job is queued for (a worker that
died, a flushed Redis); cheap: one count and a few Redis calls."""

MAX_SOURCE_BYTES = 1_048_576
"""The largest journey, segments or links file read (1 MiB; the shipped journeys are 2 to 6 KB).
A larger file is refused at its line 1 before it is read whole, so a wrong path or a
generated monster costs no memory."""

MAX_SOURCE_DEPTH = 64
"""The deepest nesting of lists and mappings in those files (a journey needs under ten):
deeper is refused where it starts, which keeps parsing free of deep recursion."""

BASE_CURRENCY = "JPY"
"""The currency tier and segment rules compare ``arr`` and ``ltv`` in (``BASE_CURRENCY``)."""

CURRENCY_RATES = (
    "USD=150,EUR=160,GBP=190,CHF=170,CNY=21,HKD=19,TWD=4.7,KRW=0.11,SGD=112,AUD=98,NZD=90,"
    "CAD=108,INR=1.8,THB=4.2"
)
"""The embedded rate table (``CURRENCY_RATES``), in JPY: one unit of each currency is that many
yen. Round figures for the demo and for trying things out; a real deployment sets its own
(finance's planning rates), and a different ``BASE_CURRENCY`` without a table of its own gets
these divided by its rate."""

GLOBAL_CONTROL_PERCENT = 0.0
"""The share of contacts (and of accounts) in the global control group
(``GLOBAL_CONTROL_PERCENT``, 0 to 50, e.g. ``5`` or ``2.5``): no journey sends to them; each
journey they qualify for enrols them as held out, so reports measure the lift of all the
journeys together. 0, the default, turns it off."""

HOLDOUT_WINDOW_DAYS = 30
"""How long a held-out member (a journey's holdout or the global control) stays enrolled, and
how long a goal counts, in a journey whose goal has no ``within`` (or that has no goal):
both groups are watched over the same window. A goal's ``within`` replaces it."""

TASK_DIGEST_HOUR = 8
"""The hour of the day (0-23, in ``TASK_TIME_ZONE``) at which users who take a daily digest of
their tasks (``users.task_mail = digest``) get it (``TASK_DIGEST_HOUR``)."""

TASK_TIME_ZONE = "UTC"
"""The team's time zone (``TASK_TIME_ZONE``): the digest hour and the business days of task
SLAs (``due: 2 business days``) are read in it, and task mail prints its dates in it."""

OUTBOUND_TYPES = (
    "message.sent",
    "message.delivered",
    "message.bounced",
    "message.opened",
    "message.clicked",
    "message.answered",
    "contact.unsubscribed",
    "task.created",
    "task.done",
    "journey.entered",
    "journey.exited",
)
"""The outgoing event types a subscriber may ask for (``types=message.*,task.done``); the same
as :class:`campaigns.store.enums.OutboundType`, named here so the settings check them."""

EVENT_MAX_ATTEMPTS = 8
"""POSTs of one outgoing event to one subscriber before it goes to the dead-letter list
(``EVENT_MAX_ATTEMPTS``)."""

EVENT_BACKOFF_BASE = 30
"""Seconds before the first retry of a failed POST (``EVENT_BACKOFF_BASE``); each later one
waits twice as long, with jitter, up to ``EVENT_BACKOFF_CAP``. With the defaults, the eight
attempts span about two hours."""

EVENT_BACKOFF_CAP = 3600
"""The longest wait between two POSTs of one event (``EVENT_BACKOFF_CAP``, seconds)."""

EVENT_TIMEOUT = 10
"""Seconds a subscriber has to answer one POST (``EVENT_TIMEOUT``); slower counts as failed."""

EVENT_REPLAY_WINDOW = 300
"""How old (seconds) a signature's timestamp may be before a receiver refuses it
(``EVENT_REPLAY_WINDOW``); :func:`campaigns.engine.hooks.verify` takes it as its default."""

EVENT_DELIVER_SECONDS = 5
"""How often the worker's scheduler posts due outgoing events (when subscribers exist)."""

EVENT_CLAIM = 100
"""Outgoing events one deliverer claims at a time."""
CONSENT_RULES = (
    "JP=opt_in,EU=opt_in,US=opt_in|business_relationship|published_address,"
    "*=opt_in|business_relationship"
)
"""Which consent bases let marketing mail go, per country (``CONSENT_RULES``; see
docs/compliance.md "Consent"): Japan and the EU/EEA opt-in only, the US any basis, elsewhere
opt-in or an existing business relationship."""

CONSENT_DEFAULT_COUNTRY = "JP"
"""The country of a contact whose own and whose account's country are unknown: the product is
Japanese first, so Japan's rule (the strictest shipped) applies."""

CONSENT_RETENTION_DAYS = 31
"""Consent records of an erased contact are kept this many days after the last send to the
address (``CONSENT_RETENTION_DAYS``); the law asks for at least a month, so less is refused."""

CONSENT_WORDING_VERSION = "optin-2026-12"
"""The version of the opt-in wording the preference page shows (:data:`CONSENT_WORDING`),
kept with every opt-in given there: change it whenever the words change."""

CONSENT_WORDING = {
    "en": (
        "Yes, send me news, tips, surveys and event invitations by email. I can withdraw"
        " this at any time on this page or with the unsubscribe link in every email."
    ),
    "ja": (
        "お知らせ・活用のヒント・アンケート・イベントのご案内をメールで受け取ることに同意します。"
        "この同意は、このページまたは各メールの配信停止リンクからいつでも撤回できます。"
    ),
}
"""The opt-in wording of version :data:`CONSENT_WORDING_VERSION`, per locale."""
