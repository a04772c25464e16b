"""``python -m lcnflow.sweep sweep FILE --out DIR`` / ``python -m lcnflow.sweep summarize DIR``."""

import sys

try:
    from lcnflow._signals import run_guarded
except KeyboardInterrupt:  # Ctrl-C before lcnflow's own handling is in place
    sys.stderr.write("interrupted\n")
    sys.exit(130)


def _load_sweep():
    from lcnflow.sweep.cli import main

    return main


if __name__ == "__main__":
    sys.exit(run_guarded(_load_sweep, None))
