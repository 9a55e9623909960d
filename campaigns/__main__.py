"""``python -m campaigns``: the same as the ``campaigns`` console script."""

from campaigns.cli import main

main()
