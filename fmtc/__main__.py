"""Allow ``python -m fmtc``."""

from fmtc.cli import main

raise SystemExit(main())
