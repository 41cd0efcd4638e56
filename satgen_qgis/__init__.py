"""SatGen QGIS plugin: generative models for satellite imagery in QGIS Processing.

QGIS calls classFactory(); everything heavy (torch, the engine's models) is
imported only when an algorithm runs, so the plugin loads even where torch is
missing.

The plugin reaches the engine as `satgen_qgis.engine`. In the plugin zip
(`make package`) the engine is a real sub-package. In a checkout (`make
dev-plugin`, tests) the engine is the top-level `engine/` beside this folder, and
`satgen_qgis.engine.*` are the very same module objects as `engine.*`, so one
process never holds two copies of an engine module (two `InputError` classes,
two model registries).
"""

import importlib
import importlib.abc
import importlib.util
import sys
from pathlib import Path

_ENGINE = __name__ + ".engine"


class _EngineAlias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports `satgen_qgis.engine[.x]` as the top-level `engine[.x]` module of the checkout."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname == _ENGINE or fullname.startswith(_ENGINE + "."):
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        return importlib.import_module("engine" + spec.name[len(_ENGINE):])

    def exec_module(self, module):
        pass  # already executed under its own name


def _link_engine() -> None:
    here = Path(__file__).resolve().parent  # resolve(): a dev-plugin folder links here
    if (here / "engine" / "__init__.py").is_file():
        return  # the plugin zip: the engine ships inside
    root = here.parent
    if not (root / "engine" / "__init__.py").is_file():
        raise ImportError(f"SatGen's engine is missing: neither {here / 'engine'} nor {root / 'engine'} exists; "
                          f"reinstall the plugin zip")
    if str(root) not in sys.path:
        sys.path.append(str(root))
    if not any(isinstance(f, _EngineAlias) for f in sys.meta_path):
        sys.meta_path.insert(0, _EngineAlias())


_link_engine()


def classFactory(iface):
    from .plugin import SatGenPlugin

    return SatGenPlugin(iface)
