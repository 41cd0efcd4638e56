"""Plugin entry: registers the SatGen Processing provider (desktop and qgis_process)."""

from qgis.core import QgsApplication


class SatGenPlugin:
    def __init__(self, iface=None):
        self.iface = iface
        self.provider = None

    def initProcessing(self):  # qgis_process calls only this
        from .provider import SatGenProvider

        if self.provider is None:
            self.provider = SatGenProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self):
        self.initProcessing()

    def unload(self):
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
