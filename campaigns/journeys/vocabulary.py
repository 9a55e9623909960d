"""The words of the journey DSL: keys, step types, channels, goals, kinds and their shapes.

One place for every word a journey file may use, so the parsers agree on them and
``tests/test_docs.py`` can hold docs/dsl.md to all of them.
"""

from __future__ import annotations

import re

from campaigns.journeys.model import StepType

ID_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
EVENT_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.:-]{0,127}$")
BRAND_RE = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
"""A brand key of templates/sender.yaml (``brand: KEY``)."""
LOCALE_RE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
ID_HINT = "use lowercase letters, digits and _, starting with a letter"

TOP_KEYS = (
    "journey",
    "name",
    "description",
    "segments",
    "audience",
    "entry",
    "re_entry",
    "exit_when",
    "goal",
    "sending_window",
    "holdout",
    "locale",
    "enrol",
    "recipients",
    "brand",
    "purpose",
    "steps",
)
STEP_COMMON = ("id", "channel", "goal", "category", "send_time", "recipients", "purpose")
UNITS = ("contact", "account")
RECIPIENT_WORDS = ("all", "primary")
RECIPIENT_KEYS = ("roles", "when")
TASK_PER = ("account", "contact")
STEP_TYPES = tuple(t.value for t in StepType)
CHANNELS = ("email", "task", "in_app")
STEP_GOALS = ("opened", "clicked", "answered", "rsvp_yes")
SEND_TIMES = ("now", "best_hour")
PURPOSES = ("marketing", "operational")
"""What a step's email is for (``purpose:``): ``marketing`` (the default) needs the contact's
consent and follows their preferences, the cap and the window; ``operational`` (renewal
notices, invoices, security, service changes) goes to every address not suppressed."""
CATEGORIES = ("newsletter", "product", "renewal", "survey", "event", "onboarding", "transactional")
TASK_KINDS = ("call", "meeting", "email", "review")
WAIT_SIGNALS = ("answered", "opened", "clicked", "task_done", "event")
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DATE_FIELDS = ("renewal_date", "contract_start")
DATE_WAIT_KEYS = ("date", "offset", "at", "if_past")
IF_PAST = ("skip", "now", "exit")
SETTABLE = ("health_score", "contact.locale")

# What kind of step a signal or function needs: see expressions.ENGAGEMENT.
KIND_OF = {"email": "email", "survey": "answer", "invite": "answer", "task": "task"}
KIND_TEXT = {
    "email": "an email, survey or invite step",
    "answer": "a survey or invite step",
    "task": "a task step",
}
"""How a message names each kind of step."""
