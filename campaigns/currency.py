"""Money in many currencies: the base currency that rules compare amounts in, and the rates.

An account's ``arr`` and ``ltv`` are stored in its own ``currency``. Tier and segment rules
(SQL, :mod:`campaigns.engine.audience`) and journey conditions (Python,
:func:`campaigns.engine.context.condition_values`) compare them in one base currency
(``BASE_CURRENCY``, JPY by default) at the rates of ``CURRENCY_RATES``
(``USD=150,EUR=160``: one unit of each currency is that many units of the base currency).
Both sides convert the same way, :meth:`Currencies.to_base` being the rule: the amount times
its rate, rounded to 2 decimal places (half up); an amount in a currency without a rate is
missing (None, SQL's NULL), so no comparison with it holds.

The table is checked when the settings are read (:func:`parse`); an import refuses a
currency the table does not name (:mod:`campaigns.imports`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, localcontext

from campaigns import defaults
from campaigns.exceptions import ConfigError

CODE = re.compile(r"[A-Z]{3}")
"""An ISO 4217 code as stored: three capital letters."""

CENT = Decimal("0.01")
_RATE = re.compile(r"\s*([A-Za-z]{3})\s*=\s*([0-9]{1,12}(?:\.[0-9]{1,12})?)\s*")
_EXAMPLE = "e.g. USD=150,EUR=160 (one unit is that many units of the base currency)"


@dataclass(frozen=True)
class Currencies:
    """The base currency and the rate of every currency an amount may be in (the base's is
    1). Hashable, so a segment set that carries it stays hashable."""

    base: str
    rates: tuple[tuple[str, Decimal], ...]
    _by_code: dict[str, Decimal] = field(init=False, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_code", {self.base: Decimal(1), **dict(self.rates)})

    @property
    def codes(self) -> tuple[str, ...]:
        """Every currency with a rate, the base first."""
        return tuple(self._by_code)

    def rate(self, code: str | None) -> Decimal | None:
        """Units of the base currency per unit of ``code``; None when it has no rate."""
        return self._by_code.get(code) if code else None

    def to_base(self, amount: Decimal | None, code: str | None) -> Decimal | None:
        """``amount`` of ``code`` in the base currency, to the cent; None when either is
        unknown."""
        rate = self.rate(code)
        if amount is None or rate is None:
            return None
        if rate == 1:
            return amount
        with localcontext() as context:
            context.prec = 50  # exact: 18 digits of amount times 24 of rate
            return (amount * rate).quantize(CENT, ROUND_HALF_UP)


def parse(base: str | None, rates: str | None) -> Currencies:
    """``BASE_CURRENCY`` and ``CURRENCY_RATES`` as :class:`Currencies`; unset, the embedded
    ones (:data:`campaigns.defaults.CURRENCY_RATES`, rebased when only the base is set).
    Raises :class:`ConfigError` naming the variable, in one line."""
    code = (base or defaults.BASE_CURRENCY).strip().upper()
    if not CODE.fullmatch(code):
        raise ConfigError(
            f"BASE_CURRENCY: {base!r} is not a 3-letter currency code such as JPY or USD"
        )
    if rates and rates.strip():
        return Currencies(code, _table("CURRENCY_RATES", rates, code))
    embedded = _table("CURRENCY_RATES", defaults.CURRENCY_RATES, defaults.BASE_CURRENCY)
    if code == defaults.BASE_CURRENCY:
        return Currencies(code, embedded)
    return Currencies(code, _rebased(code, embedded))


def _table(name: str, text: str, base: str) -> tuple[tuple[str, Decimal], ...]:
    found: dict[str, Decimal] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        match = _RATE.fullmatch(part)
        if not match:
            raise ConfigError(f"{name}: {_shown(part)} is not 'CODE=rate', {_EXAMPLE}")
        code, rate = match.group(1).upper(), Decimal(match.group(2))
        if code in found:
            raise ConfigError(f"{name}: {code} is given twice")
        if rate == 0:
            raise ConfigError(f"{name}: the rate of {code} is 0; a rate must be more than 0")
        if code == base and rate != 1:
            raise ConfigError(
                f"{name}: {code} is the base currency, so its rate is 1 (got {match.group(2)})"
            )
        found[code] = rate
    found.pop(base, None)
    return tuple(sorted(found.items()))


def _rebased(base: str, table: tuple[tuple[str, Decimal], ...]) -> tuple[tuple[str, Decimal], ...]:
    """The embedded yen table seen from another base: every rate divided by the base's."""
    rates = dict(table)
    if base not in rates:
        raise ConfigError(
            f"BASE_CURRENCY: {base} has no rate in the embedded table; set CURRENCY_RATES"
            f" in {base}, {_EXAMPLE}"
        )
    with localcontext() as context:
        context.prec = 12
        rebased = {code: +(rate / rates[base]) for code, rate in rates.items() if code != base}
        rebased[defaults.BASE_CURRENCY] = +(Decimal(1) / rates[base])
    return tuple(sorted(rebased.items()))


def _shown(part: str) -> str:
    text = part.strip()
    return repr(text if len(text) <= 40 else f"{text[:37]}...")


DEFAULT = parse(None, None)
"""The embedded base currency and rates: what a test or a tool without settings uses."""
