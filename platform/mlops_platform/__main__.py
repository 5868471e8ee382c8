"""`python -m mlops_platform stage-training|collect-training|gate|stage-serving`."""

import sys

from mlops_platform.commands import main

sys.exit(main(sys.argv[1:]))
