"""``python -m forkhooks``: the same as the ``forkhooks`` console script."""

from ._cli import main

raise SystemExit(main())
