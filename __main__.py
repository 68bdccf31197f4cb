"""The Pulumi program: stack config -> settings -> components -> stack outputs."""

import pulumi

from infra.program import build
from infra.settings import settings_from_pulumi

for key, value in build(settings_from_pulumi()).items():
    pulumi.export(key, value)
