"""satgen:render_map_target: render styled layers onto a satellite raster's exact grid
as an RGB map, plus the legend that decodes its colours: the target of satellite ->
map translation training."""

from __future__ import annotations

from qgis.core import (
    QgsExpressionContext,
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingParameterColor,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)
from qgis.PyQt.QtGui import QColor

from .. import rendering, styles
from .base import SatGenAlgorithm, gdal_raster_provider, raster_file_value

DEFAULT_BACKGROUND = "#f2efe9"  # OSM Carto's land colour


class RenderMapTargetAlgorithm(SatGenAlgorithm):
    QGIS_RENDERED = ("LAYERS",)

    def name(self):
        return "render_map_target"

    def displayName(self):  # noqa: N802
        return "Render map target"

    def shortHelpString(self):  # noqa: N802
        return (
            "Renders vector (or raster) layers with their QGIS styles into an RGB map on exactly the pixel grid "
            "of the input raster: same CRS, extent, pixel size and size. Paired with the satellite raster it is "
            "the training target for satellite -> map translation (Pix2Pix).\n\n"
            "Rendering is aliased: no antialiasing, no labels, no simplification, so every pixel is exactly "
            "one symbol's colour or the BACKGROUND colour where no layer draws. Layers in another CRS are "
            "reprojected on the fly; the first layer in LAYERS is drawn on top. Large rasters are rendered in "
            "strips of rows, so memory stays small.\n\n"
            "STYLE (optional) is a .qml style applied to every vector layer, e.g. resources/styles/osm_landuse.qml "
            "in the plugin's folder for OpenStreetMap land use (categorized on 'fclass'); without it "
            "each layer keeps its own style. For a target that can be decoded back to classes use solid, opaque "
            "fills without outlines, with colours clearly distinct from each other and from the background.\n\n"
            "OUTPUT_LEGEND (optional) writes the legend as JSON: {\"label\": [r, g, b], ..., \"background\": "
            "[r, g, b]}, one entry per category, range or rule of each layer's style. Training and evaluation "
            "use it to map colours back to classes.\n\n"
            "The input raster must be north-up with square pixels. Nothing is written if the run fails or is "
            "cancelled.")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer(
            "INPUT", "Raster whose grid to render on (the satellite image)"))
        self.addParameter(QgsProcessingParameterMultipleLayers(
            "LAYERS", "Layers to render (styled; the first is drawn on top)", QgsProcessing.TypeMapLayer))
        self.addParameter(QgsProcessingParameterFile(
            "STYLE", "Style (.qml) for every vector layer (empty: each layer's own style)",
            extension="qml", optional=True))
        self.addParameter(QgsProcessingParameterColor(
            "BACKGROUND", "Background colour (where no layer draws)", defaultValue=QColor(DEFAULT_BACKGROUND),
            opacityEnabled=False))
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", "Map target (RGB)"))
        self.addParameter(QgsProcessingParameterFileDestination(
            "OUTPUT_LEGEND", "Legend (JSON: label -> colour)", fileFilter="JSON files (*.json)",
            optional=True, createByDefault=True))

    # -- preparation, in the thread that owns the layers ----------------------
    def prepareAlgorithm(self, parameters, context, feedback):  # noqa: N802
        # Problems found here are raised from processAlgorithm: QGIS reduces an exception
        # raised in prepareAlgorithm to "There were errors executing the algorithm".
        self.problem, self.clones = "", []
        # the grid from GDAL's data provider for a raster file: a layer would write .aux.xml beside it (base.py)
        path = raster_file_value(parameters.get("INPUT"), context)
        raster = gdal_raster_provider(path) if path else self.parameterAsRasterLayer(parameters, "INPUT", context)
        if raster is None or not raster.isValid():
            self.problem = ("INPUT: no valid raster layer given; choose the satellite raster whose grid "
                            "the map should have")
            return True
        self.crs, self.grid_extent = raster.crs(), raster.extent()
        layers = self.parameterAsLayerList(parameters, "LAYERS", context)
        if not layers:
            self.problem = ("LAYERS: no layers given, so the target would be empty; choose the styled vector "
                            "layers (e.g. OpenStreetMap land use) to render")
            return True
        background = self.parameterAsColor(parameters, "BACKGROUND", context)
        if background is None or not background.isValid():
            background = QColor(DEFAULT_BACKGROUND)
        background.setAlpha(255)
        self.background = background

        # clones: STYLE and the symbol changes must not touch the user's layers, and
        # clones made here may be rendered from the worker thread of processAlgorithm
        self.clones = [layer.clone() for layer in layers]
        style = self.parameterAsFile(parameters, "STYLE", context)
        if style:
            self.problem = rendering.apply_style(self.clones, style, warner(feedback))
        return True

    # -- rendering ----------------------------------------------------------------
    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        try:
            return super().processAlgorithm(parameters, context, feedback)
        finally:
            self.release_clones()

    def release_clones(self):
        """Drop the layer copies, also after an error or cancel (a traceback would keep them
        alive past QGIS's exit). They belong to the main thread, which deletes them."""
        from qgis.PyQt import sip

        for clone in self.clones:
            sip.transferto(clone, None)
            clone.deleteLater()
        self.clones = []

    def run_engine(self, parameters, context, feedback):
        warn = warner(feedback.feedback)
        if self.problem:
            raise QgsProcessingException(self.problem)
        legend = rendering.check_target_layers(self.clones, self.crs, self.grid_extent, self.background, warn,
                                               context.transformContext())
        output = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        legend_path = self.parameterAsFileOutput(parameters, "OUTPUT_LEGEND", context)
        rendering.render_map_target(
            self.clones, self.raster_path(parameters, "INPUT", context), self.crs, self.background, output,
            legend, legend_path, feedback, warn, transform_context=context.transformContext(),
            expression_context=QgsExpressionContext(context.expressionContext()))
        styles.when_loaded(context, output, styles.rgb_exact(legend))
        results = {"OUTPUT": output}
        if legend_path:
            results["OUTPUT_LEGEND"] = legend_path
        return results


def warner(feedback):
    """pushWarning of a QgsProcessingFeedback, which may be None."""
    return feedback.pushWarning if feedback is not None else lambda message: None
