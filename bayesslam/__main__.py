"""``python -m bayesslam`` runs the command-line interface."""

import sys

from bayesslam.cli import main

sys.exit(main())
