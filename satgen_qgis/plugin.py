"""Plugin entry: registers the SatGen Processing provider (desktop and qgis_process); in desktop QGIS,
offers the engine's install in one click when it is missing."""

from qgis.core import QgsApplication


class SatGenPlugin:
    def __init__(self, iface=None):
        self.iface = iface
        self.provider = None
        self.install_bar = None

    def initProcessing(self):  # qgis_process calls only this
        from .provider import SatGenProvider

        if self.provider is None:
            self.provider = SatGenProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self):
        self.initProcessing()
        if self.iface is not None:
            self.offer_install()

    def offer_install(self) -> None:
        """A message bar with an Install button when neither SatGen's environment nor QGIS's Python can
        run the engine (or the environment's Python is gone); the button opens Check dependencies with
        'Install what is missing' ticked."""
        from . import runner

        if runner.can_run():
            return
        from qgis.core import Qgis
        from qgis.PyQt.QtWidgets import QPushButton

        bar = self.iface.messageBar()
        item = bar.createMessage("SatGen", "its engine (PyTorch and a few packages) is not installed yet.")
        item.setToolTip("Install puts it into a Python environment of SatGen's own; QGIS's Python stays as it is.")
        button = QPushButton("Install…", item)
        button.clicked.connect(self.open_install_dialog)
        item.layout().addWidget(button)
        self.install_bar = bar.pushWidget(item, Qgis.Warning)

    def open_install_dialog(self) -> None:
        import processing

        if self.install_bar is not None:
            self.iface.messageBar().popWidget(self.install_bar)
            self.install_bar = None
        processing.execAlgorithmDialog("satgen:check_dependencies", {"INSTALL": True})

    def unload(self):
        if self.install_bar is not None and self.iface is not None:
            try:
                self.iface.messageBar().popWidget(self.install_bar)
            except RuntimeError:  # already closed by the user
                pass
            self.install_bar = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
