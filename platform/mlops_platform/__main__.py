"""`python -m mlops_platform <command>`: the commands are in `commands.py`."""

import sys

from mlops_platform.commands import main

sys.exit(main(sys.argv[1:]))
