"""Whether the compiled extensions may be used (decided once, at import)."""

import os

# MQTTFAST_NO_EXTENSIONS=1 forces the pure-Python twins everywhere.
NO_EXTENSIONS: bool = os.environ.get("MQTTFAST_NO_EXTENSIONS", "") not in ("", "0")
