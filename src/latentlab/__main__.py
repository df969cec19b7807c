"""`python -m latentlab`: the same command as `latentlab`, for a venv that is not activated."""

import sys

from latentlab.cli import main

sys.exit(main())
