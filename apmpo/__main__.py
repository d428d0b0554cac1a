"""``python -m apmpo``: the same as the ``apmpo`` command."""

from apmpo.cli import main

raise SystemExit(main())
