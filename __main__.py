"""``python -m vtok``: the command line, as the ``vtok`` script runs it."""

import sys

from vtok.cli import main

sys.exit(main())
