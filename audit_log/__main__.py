"""``python -m audit_log``: the same command line as the ``audit-log`` script."""

import sys

from audit_log._cli import main

if __name__ == "__main__":
    sys.exit(main())
