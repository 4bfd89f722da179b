"""``python -m bench``: run the whole suite and print the table."""

import sys

from bench.cli import main

sys.exit(main())
