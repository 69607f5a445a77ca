"""`python -m tq_worker` is `tq-worker`."""

import sys

from tq_worker.cli import main

sys.exit(main())
