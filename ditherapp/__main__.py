"""``python -m ditherapp``: the same as the ``ditherapp`` command, with a console."""

import sys

from ditherapp.app import main

sys.exit(main())
