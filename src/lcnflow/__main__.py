"""``python -m lcnflow …``: the ``lcnflow`` command line."""

import sys

try:
    from lcnflow._main import main
except KeyboardInterrupt:  # Ctrl-C before lcnflow's own handling is in place
    sys.stderr.write("interrupted\n")
    sys.exit(130)

if __name__ == "__main__":
    sys.exit(main())
