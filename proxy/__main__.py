"""``python -m proxy`` is the ``wheelmeld`` command."""

from proxy.cli import main

raise SystemExit(main())
