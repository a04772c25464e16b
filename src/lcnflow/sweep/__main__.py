"""``python -m lcnflow.sweep sweep FILE --out DIR`` / ``python -m lcnflow.sweep summarize DIR``."""

import sys

from lcnflow.sweep.cli import main

if __name__ == "__main__":
    sys.exit(main())
