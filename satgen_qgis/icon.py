"""The plugin's icon, in the resources folder that sits beside the engine (checkout or plugin zip)."""

from .engine import RESOURCES

ICON = RESOURCES / "icons" / "satgen.svg"
