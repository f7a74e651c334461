"""``python -m forkhooks``: the same as the ``forkhooks`` console script."""

from ._tools.cli import main

raise SystemExit(main())
