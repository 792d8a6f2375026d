"""`python -m jaxmed` runs the command line."""

import sys

from jaxmed.cli import main

sys.exit(main())
