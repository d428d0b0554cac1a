"""``python -m apmpo.eval ...``: the ``apmpo eval`` command on its own."""

import sys

from apmpo.eval.cli import main

sys.exit(main())
