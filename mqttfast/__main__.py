"""``python -m mqttfast``: the same as the ``mqttfast`` command."""

import sys

from mqttfast.app.cli import main

sys.exit(main())
