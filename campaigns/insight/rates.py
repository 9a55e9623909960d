"""The maths behind response-rate reports and per-segment tuning, as pure functions of counts.

Everything here takes plain counts (the human hits of :mod:`campaigns.tracking.classify`, never raw
opens) and returns plain numbers, so reports, the holdout readout and the tuner share one
tested implementation and no database or web code.

Rates and intervals
    A :class:`Rate` is ``hits`` out of ``n``. Its interval is the **Wilson score interval**
    (Wilson 1927), not the textbook ``p ± z·√(p(1−p)/n)``: that Wald interval collapses to
    zero width at 0/n and n/n and spills outside [0, 1] for small samples, exactly the cases a
    new campaign reports on; Wilson's stays inside [0, 1], is never empty, and holds its
    coverage close to 95% for small n (Newcombe 1998a, "Two-sided confidence intervals for
    the single proportion"). 0 of 0 has no rate: ``value`` and ``interval`` are None.

Lift over a holdout
    :func:`lift` compares a treated group with its control (a journey's holdout, say the 10%
    who get nothing): the difference of proportions in absolute points with its interval by
    **Newcombe's hybrid score method** (method 10 of Newcombe 1998b, "Interval estimation for
    the difference between independent proportions"). With Wilson intervals (l₁, u₁) for p₁
    and (l₂, u₂) for p₂ and D = p₁ − p₂::

        low  = D − √((p₁ − l₁)² + (u₂ − p₂)²)
        high = D + √((u₁ − p₁)² + (p₂ − l₂)²)

    It inherits Wilson's good behaviour at 0 and 1 (0/10 against 0/20 still gets an honest
    interval) and needs no iteration. The relative lift (p₁/p₂ − 1) is reported when the
    control rate is positive, as a point estimate only: the difference is what the interval
    speaks about (an interval that excludes 0 is a lift the data supports).

Choosing among arms (variants or channels) in a segment
    Each :class:`Arm` has the successes and trials of the goal the step declares (a human
    response rate). Its rate gets the posterior Beta(1 + successes, 1 + failures) from a
    uniform prior, arms independent. :func:`probability_best` is the posterior probability
    that each arm has the highest rate, by Monte Carlo: each share is a binomial proportion
    over ``draws``, so its standard error is √(P(1−P)/draws) ≤ 0.5/√draws, about 0.0035 for
    the default 20,000 draws. The default generator is seeded with :data:`SEED`, so the same
    counts always print the same report.

    The rules that turn it into a sending policy, shared by :func:`allocate` (the share of the
    next sends, for batches and reports) and :func:`choose` (one send):

    - **Minimum sample**: until every arm has :data:`MIN_TRIALS` trials, arms are split evenly;
      the posterior of a handful of sends is mostly prior and luck, and an early lean would
      starve an arm before it has been seen.
    - **Exploration floor**: after that, ``share_i = floor/k + (1 − floor)·P(best_i)``, so every
      one of the k arms keeps at least ``floor/k`` of the sends (with :data:`FLOOR` = 0.1 and
      three arms, 3.3% each). Pure Thompson sampling all but stops sending a clear loser, which
      then never gets the chance to show that the audience or the season changed. The floor
      costs at most ``floor`` of the sends.
    - :func:`choose` is the same policy drawn once: with probability ``floor`` a uniformly
      random arm, otherwise the arm with the highest Beta sample (one Thompson draw). Its
      expected shares are exactly those of :func:`allocate`.

    Counts are cumulative as given; to follow a drifting audience, pass recent counts only.
    With one arm there is nothing to choose: it gets every send. With none, shares are empty
    and :func:`choose` refuses.

Send time
    :func:`best_hour` picks the hour of the day whose Wilson *lower* bound is highest among
    hours with at least :data:`MIN_N` sends: a lucky 3 of 10 at 4 a.m. does not beat a steady
    20% over 2,000 sends at 10 a.m.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

Z95 = 1.959963984540054
"""The two-sided 95% normal quantile, Φ⁻¹(0.975)."""

SEED = 1998
"""Seed of the default generator of :func:`probability_best` and :func:`allocate`, so a
report on the same counts always shows the same probabilities."""

DRAWS = 20_000
"""Monte Carlo draws for :func:`probability_best`: a standard error of at most 0.0035."""

FLOOR = 0.1
"""The share of sends spread evenly over all arms whatever the data says (exploration)."""

MIN_TRIALS = 100
"""Trials every arm needs before the policy leans towards any of them."""

MIN_N = 50
"""Sends an hour needs before :func:`best_hour` considers it."""


def _check_counts(hits: int, n: int) -> None:
    if n < 0 or hits < 0:
        raise ValueError(f"counts cannot be negative: {hits} of {n}")
    if hits > n:
        raise ValueError(f"more hits than trials: {hits} of {n}")


def wilson(hits: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval (low, high) for ``hits`` out of ``n``, inside [0, 1].

    ``z`` is the normal quantile (the default gives 95%). 0 of 0 gives (0, 1): the formula's
    limit, and the honest answer when nothing is known. Raises ValueError for negative counts
    or more hits than trials.
    """
    _check_counts(hits, n)
    if not z >= 0:  # also refuses NaN
        raise ValueError(f"z must be a non-negative number, not {z}")
    if n == 0:
        return 0.0, 1.0
    p = hits / n
    z2 = z * z
    denominator = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denominator
    # Exact at the ends (0/n starts at 0, n/n ends at 1); rounding never leaves p outside.
    low = 0.0 if hits == 0 else min(max(centre - half, 0.0), p)
    high = 1.0 if hits == n else max(min(centre + half, 1.0), p)
    return low, high


@dataclass(frozen=True)
class Rate:
    """``hits`` out of ``n`` (opens, clicks, answers... of the messages sent)."""

    hits: int
    n: int

    def __post_init__(self) -> None:
        _check_counts(self.hits, self.n)

    @property
    def value(self) -> float | None:
        """hits / n, or None when nothing was sent."""
        return self.hits / self.n if self.n else None

    @property
    def interval(self) -> tuple[float, float] | None:
        """The 95% Wilson score interval (low, high), or None when nothing was sent."""
        return wilson(self.hits, self.n) if self.n else None


@dataclass(frozen=True)
class Lift:
    """What a treated group gained over its control, in absolute and relative terms.

    ``difference`` is treated − control (0.02 is two points) and ``interval`` its 95% interval
    by Newcombe's hybrid score method, both None when either group is empty; ``relative`` is
    treated / control − 1, None also when the control rate is 0.
    """

    treated: Rate
    control: Rate
    difference: float | None
    interval: tuple[float, float] | None
    relative: float | None


def newcombe(treated: Rate, control: Rate, z: float = Z95) -> tuple[float, float]:
    """The interval of treated − control by Newcombe's hybrid score method (his method 10),
    inside [−1, 1]. Both rates need n > 0 (ValueError otherwise)."""
    p1, p2 = treated.value, control.value
    if p1 is None or p2 is None:
        raise ValueError("a difference of proportions needs sends in both groups")
    l1, u1 = wilson(treated.hits, treated.n, z)
    l2, u2 = wilson(control.hits, control.n, z)
    d = p1 - p2
    low = d - math.hypot(p1 - l1, u2 - p2)
    high = d + math.hypot(u1 - p1, p2 - l2)
    return max(low, -1.0), min(high, 1.0)


def lift(treated: Rate, control: Rate) -> Lift:
    """The lift of ``treated`` over ``control`` (e.g. a journey's goal rate against its
    holdout's)."""
    p1, p2 = treated.value, control.value
    if p1 is None or p2 is None:
        return Lift(treated, control, None, None, None)
    relative = p1 / p2 - 1 if p2 > 0 else None
    return Lift(treated, control, p1 - p2, newcombe(treated, control), relative)


@dataclass(frozen=True)
class Arm:
    """One option in a segment (a variant or a channel) with its goal's successes so far."""

    name: str
    successes: int
    trials: int

    def __post_init__(self) -> None:
        if self.trials < 0 or self.successes < 0:
            raise ValueError(
                f"arm {self.name!r}: counts cannot be negative ({self.successes} of {self.trials})"
            )
        if self.successes > self.trials:
            raise ValueError(
                f"arm {self.name!r}: more successes than trials ({self.successes} of {self.trials})"
            )

    @property
    def posterior(self) -> tuple[int, int]:
        """The (alpha, beta) of its Beta posterior from a uniform prior."""
        return 1 + self.successes, 1 + self.trials - self.successes


def _check_arms(arms: Sequence[Arm]) -> None:
    names = [arm.name for arm in arms]
    if len(set(names)) != len(names):
        raise ValueError(f"arm names must be unique: {names}")


def _check_policy(floor: float, min_trials: int) -> None:
    if not 0 <= floor <= 1:
        raise ValueError(f"floor must be between 0 and 1, not {floor}")
    if min_trials < 0:
        raise ValueError(f"min_trials cannot be negative: {min_trials}")


def _warming_up(arms: Sequence[Arm], min_trials: int) -> bool:
    return any(arm.trials < min_trials for arm in arms)


def _thompson(arms: Sequence[Arm], rng: random.Random) -> int:
    """The index of the arm with the highest draw from its posterior (the first on a tie)."""
    samples = [rng.betavariate(*arm.posterior) for arm in arms]
    return samples.index(max(samples))


def probability_best(
    arms: Sequence[Arm], draws: int = DRAWS, rng: random.Random | None = None
) -> dict[str, float]:
    """The posterior probability that each arm has the highest rate, by name; summing to 1.

    Monte Carlo over ``draws`` joint draws of the independent Beta posteriors (standard error
    √(P(1−P)/draws) each); ``rng`` defaults to ``random.Random(SEED)``, so the answer is
    stable. One arm is certainly best; no arms give an empty dict.
    """
    _check_arms(arms)
    if draws < 1:
        raise ValueError(f"draws must be positive, not {draws}")
    if len(arms) <= 1:
        return {arm.name: 1.0 for arm in arms}
    rng = random.Random(SEED) if rng is None else rng
    wins = [0] * len(arms)
    for _ in range(draws):
        wins[_thompson(arms, rng)] += 1
    return {arm.name: count / draws for arm, count in zip(arms, wins, strict=True)}


def allocate(
    arms: Sequence[Arm],
    *,
    floor: float = FLOOR,
    min_trials: int = MIN_TRIALS,
    draws: int = DRAWS,
    rng: random.Random | None = None,
) -> dict[str, float]:
    """The share of new sends each arm should get, by name; summing to 1.

    Even until every arm has ``min_trials`` trials; then ``floor/k + (1 − floor)·P(best)``
    with P(best) from :func:`probability_best`. One arm gets everything.
    """
    _check_arms(arms)
    _check_policy(floor, min_trials)
    k = len(arms)
    if k <= 1 or _warming_up(arms, min_trials):
        return {arm.name: 1 / k for arm in arms}
    best = probability_best(arms, draws, rng)
    return {name: floor / k + (1 - floor) * p for name, p in best.items()}


def choose(
    arms: Sequence[Arm], *, rng: random.Random, floor: float = FLOOR, min_trials: int = MIN_TRIALS
) -> str:
    """The arm for one send, by the rules of :func:`allocate` drawn once.

    A uniformly random arm while any arm has fewer than ``min_trials`` trials, and with
    probability ``floor`` after that; otherwise one Thompson draw (the arm whose posterior
    sample is highest). ValueError with no arms.
    """
    _check_arms(arms)
    _check_policy(floor, min_trials)
    if not arms:
        raise ValueError("no arms to choose from")
    if len(arms) == 1:
        return arms[0].name
    if _warming_up(arms, min_trials) or rng.random() < floor:
        return rng.choice(arms).name
    return arms[_thompson(arms, rng)].name


def best_hour(counts: Mapping[int, Rate], min_n: int = MIN_N) -> int | None:
    """The hour of the day (0–23) with the highest Wilson lower bound among hours with at least
    ``min_n`` sends (the earliest such hour on a tie), or None if no hour has enough."""
    for hour in counts:
        if not 0 <= hour <= 23:
            raise ValueError(f"an hour of the day is 0 to 23, not {hour}")
    best: int | None = None
    best_low = -1.0
    for hour in sorted(counts):
        rate = counts[hour]
        if rate.n < max(min_n, 1):
            continue
        low = wilson(rate.hits, rate.n)[0]
        if low > best_low:
            best, best_low = hour, low
    return best
