"""May a contact get marketing mail: the rule of their country, and whether their basis meets it.

Pure: plain values in (the contact's and its account's country, the recorded basis, the
parsed ``CONSENT_RULES``), a reason or None out. The delivery policy
(:func:`campaigns.engine.controls.declined`) asks it for every marketing email; recording a
grant or a withdrawal is :mod:`campaigns.store.consent`. docs/compliance.md "Consent" gives
the law behind the shipped rules.
"""

from __future__ import annotations

from dataclasses import dataclass

from campaigns.config import ConsentRules

_EU = "AT BE BG CY CZ DE DK EE ES FI FR GR HR HU IE IT LT LU LV MT NL PL PT RO SE SI SK"
_EEA = "IS LI NO"  # the EEA's other three, under the same rules on marketing mail
EU_EEA = frozenset(f"{_EU} {_EEA}".split())
"""The countries the rule key ``EU`` stands for: the European Union and the EEA."""

STRICTEST = ("opt_in",)
"""The bases accepted where ``CONSENT_RULES`` names neither the country nor ``*``."""


@dataclass(frozen=True)
class Rule:
    """The rule that applies to one contact: its ``country``, the rule key it came from
    (the country, ``EU`` or ``*``) and the bases it accepts."""

    country: str
    key: str
    bases: tuple[str, ...]


def country_of(contact: str | None, account: str | None, default: str) -> str:
    """The country whose rule applies: the contact's, else its account's, else ``default``."""
    for value in (contact, account):
        if value and value.strip():
            return value.strip().upper()
    return default


def rule_for(rules: ConsentRules, country: str) -> Rule:
    """The rule of ``country``: its own key, else ``EU`` for a member of the EU or EEA, else
    ``*``, else opt-in only (:data:`STRICTEST`)."""
    if country in rules.rules:
        return Rule(country, country, rules.rules[country])
    if country in EU_EEA and "EU" in rules.rules:
        return Rule(country, "EU", rules.rules["EU"])
    if "*" in rules.rules:
        return Rule(country, "*", rules.rules["*"])
    return Rule(country, "*", STRICTEST)


def refusal(rules: ConsentRules, country: str, basis: str | None) -> str | None:
    """Why marketing mail must not go to a contact of ``country`` with ``basis`` (None: no
    consent recorded, or withdrawn), or None when the basis meets the country's rule. The
    reason is stored on the skipped message's row."""
    rule = rule_for(rules, country)
    if basis is not None and basis in rule.bases:
        return None
    under = rule_text(rule)
    if basis is None:
        return f"no consent for marketing mail under {under}"
    return f"consent basis {basis} is not enough for marketing mail under {under}"


def rule_text(rule: Rule) -> str:
    """``JP rule (opt_in)``, or ``EU rule (opt_in) for DE`` when the key is not the country."""
    text = f"{rule.key} rule ({'|'.join(rule.bases)})"
    return text if rule.key == rule.country else f"{text} for {rule.country}"
