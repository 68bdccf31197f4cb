"""The Pulumi program: stack config -> settings -> components -> stack outputs."""

import pulumi

from config.settings import settings_from_pulumi
from config.validation import ConfigError
from infra.program import build

try:
    outputs = build(settings_from_pulumi())
except ConfigError as e:
    # RunError: Pulumi prints the message alone, not a traceback through its own internals.
    raise pulumi.RunError(str(e)) from None

for key, value in outputs.items():
    pulumi.export(key, value)
