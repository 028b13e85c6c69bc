"""``python -m normlab``: the ``normlab`` command, for when the console script is not on PATH."""

import sys

from normlab.cli import main

if __name__ == "__main__":
    sys.exit(main())
