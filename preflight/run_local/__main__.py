import sys

from preflight.run_local.cli import main

sys.exit(main())
