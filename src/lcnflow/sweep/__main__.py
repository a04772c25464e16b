"""``python -m lcnflow.sweep sweep FILE --out DIR`` / ``python -m lcnflow.sweep summarize DIR``."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
