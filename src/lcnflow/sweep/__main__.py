"""``python -m lcnflow.sweep sweep FILE --out DIR`` / ``python -m lcnflow.sweep summarize DIR``."""

import sys

try:
    from .._main import sweep_main
except KeyboardInterrupt:  # Ctrl-C before lcnflow's own handling is in place
    sys.stderr.write("interrupted\n")
    sys.exit(130)

if __name__ == "__main__":
    sys.exit(sweep_main())
