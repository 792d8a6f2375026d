"""`python -m jaxmed.nn.onednn`: builds the oneDNN kernels now (the setup script runs it) and says what happened.

Unlike a first use, it retries a build that failed before with the same fingerprint
(and says so): running it is how one asks again after fixing the cause.
Exit status 0 when the kernels load, 1 (with the reason on one line) when they cannot.
"""

import sys

from jaxmed.errors import JaxmedError
from jaxmed.nn.onednn import library

try:
    earlier = library.remembered_failure()
    if earlier is not None:
        print(f"retrying a build that failed before: {earlier}", file=sys.stderr)
    library.build(retry_failed=True)
    print(f"oneDNN convolution kernels: {library.load()} (instruction set {library.cpu_isa()})")
except library.OneDnnUnavailable as error:
    print(f"oneDNN convolution kernels unavailable: {error}", file=sys.stderr)
    sys.exit(1)
except JaxmedError as error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(error.exit_status)
