"""``python -m streams``: the same entry point as the ``whatsup`` command."""

from streams.cli import main

raise SystemExit(main())
