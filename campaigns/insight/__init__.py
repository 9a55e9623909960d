"""The numbers: counts, rates with intervals, reports, tuning (the bandit), send time, NPS,
timelines."""
