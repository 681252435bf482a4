"""``python -m progress_client``: see ``progress_client/cli.py``."""

import sys

from .cli import main

sys.exit(main())
