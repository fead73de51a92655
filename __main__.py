"""stagecraft: one environment of the application, from this stack's config."""

import pulumi

from components.composition.platform import Platform, PlatformArgs
from components.config import ConfigError, load_for_current_stack

try:
    config = load_for_current_stack()
except ConfigError as error:
    # A clean, complete message and no resource touched: nothing is half-applied.
    raise pulumi.RunError(str(error)) from None

platform = Platform("stagecraft", PlatformArgs(config=config, stack=pulumi.get_stack()))
for key, value in platform.outputs.items():
    pulumi.export(key, value)
