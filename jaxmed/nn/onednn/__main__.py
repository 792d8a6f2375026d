"""`python -m jaxmed.nn.onednn`: builds the oneDNN kernels now (the setup script runs it) and says what happened.

Exit status 0 when they load, 1 (with the reason on one line) when they cannot.
"""

import sys

from jaxmed.nn.onednn.library import OneDnnUnavailable, load

try:
    print(f"oneDNN convolution kernels: {load()}")
except OneDnnUnavailable as error:
    print(f"oneDNN convolution kernels unavailable: {error}", file=sys.stderr)
    sys.exit(1)
