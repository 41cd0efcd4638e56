"""SatGen QGIS plugin: generative models for satellite imagery in QGIS Processing.

QGIS calls classFactory(); everything heavy (torch, the engine) is imported
only when an algorithm runs, so the plugin loads even where torch is missing.
"""


def classFactory(iface):  # noqa: N802 (QGIS's name)
    from .plugin import SatGenPlugin

    return SatGenPlugin(iface)
