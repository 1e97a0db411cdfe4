"""``python -m training``: see ``training.cli``."""

import signal
import sys

from training.cli import main

if __name__ == "__main__":
    # Ctrl-C / SIGINT is how a run is stopped cleanly (logged ``stopped``, workers closed). A process started in the
    # background by a non-interactive shell inherits SIGINT *ignored*, and Python then never raises
    # KeyboardInterrupt: take the default handler back so that the app's and the pipeline's stop works there too.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(main())
