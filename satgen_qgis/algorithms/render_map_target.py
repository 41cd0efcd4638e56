"""satgen:render_map_target: render styled layers onto a satellite raster's exact grid
as an RGB map, plus the legend that decodes its colours: the target of satellite ->
map translation training."""

from __future__ import annotations

import json
import os
import time

import numpy as np
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
    QgsVectorLayer,
)
from qgis.PyQt.QtGui import QColor

from .. import rendering
from .base import SatGenAlgorithm

DEFAULT_BACKGROUND = "#f2efe9"  # OSM Carto's land colour
BAND_NAMES = ["red", "green", "blue"]


class RenderMapTargetAlgorithm(SatGenAlgorithm):
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
        raster = self.parameterAsRasterLayer(parameters, "INPUT", context)
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
            vectors = [c for c in self.clones if isinstance(c, QgsVectorLayer)]
            if not os.path.isfile(style):
                self.problem = f"STYLE: the style file {style} does not exist; give the path of a .qml file"
            elif not vectors:
                feedback.pushWarning("STYLE is ignored: none of LAYERS is a vector layer")
            for clone in vectors if not self.problem else []:
                message, ok = clone.loadNamedStyle(style)
                if not ok:
                    self.problem = (f"STYLE: QGIS could not load the style {style} onto layer '{clone.name()}': "
                                    f"{message or 'unknown error'}. Check that it is a QGIS layer style file "
                                    f"(.qml, saved from a vector layer's Symbology)")
                    break
        return True

    def check_layers(self, context, warn) -> dict:
        """Raise a clear error for a target that would be empty or undecodable; return the legend."""
        if self.problem:
            raise QgsProcessingException(self.problem)
        legends = [rendering.layer_legend(c) for c in self.clones]
        silent = [lg for lg in legends if lg.draws_nothing]
        if silent:
            raise QgsProcessingException(
                "a target with no styled layers: " + "; ".join(f"layer '{lg.layer}' draws nothing "
                                                              f"({lg.draws_nothing})" for lg in silent)
                + ". Give each layer a style with visible symbols (Layer Properties > Symbology), pass a "
                  "STYLE file, or leave such layers out of LAYERS")

        outside = []
        for clone in self.clones:
            extent = rendering.extent_in(clone, self.crs, context.transformContext())
            if extent is not None and (extent.isNull() or not extent.intersects(self.grid_extent)):
                outside.append(clone.name())
        if len(outside) == len(self.clones):
            raise QgsProcessingException(
                f"none of LAYERS overlaps the INPUT raster's extent ({self.grid_extent.toString(0)} in "
                f"{self.crs.authid() or self.crs.description()}), so the target would be only background. "
                f"Choose layers that cover the raster's area, and check that each layer's CRS is set correctly")
        for name in outside:
            warn(f"layer '{name}' lies outside the INPUT raster's extent and draws nothing there")

        legend, warnings = rendering.build_legend(legends, self.background)
        for message in [w for lg in legends for w in lg.warnings] + warnings:
            warn(message)
        closest = rendering.closest_colours(legend)
        if closest is not None and closest[0] < 30:
            warn(f"the colours of '{closest[1]}' and '{closest[2]}' differ by only {closest[0]} "
                                 f"(of 255) in a channel; decoding the map back to classes will confuse them")
        for clone in self.clones:
            rendering.unclip_symbols(clone)
        return legend

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
        import rasterio

        from ..engine.errors import InputError
        from ..engine.fileio import atomic_path
        from ..engine.raster import GDAL_ENV, GeoTiffWriter, open_raster

        qgs_feedback = feedback.feedback
        legend = self.check_layers(context, qgs_feedback.pushWarning if qgs_feedback else lambda message: None)
        output = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        legend_path = self.parameterAsFileOutput(parameters, "OUTPUT_LEGEND", context)
        with rasterio.Env(**GDAL_ENV), open_raster(self.raster_path(parameters, "INPUT", context)) as src:
            t = src.transform
            if t.b != 0 or t.d != 0 or t.e >= 0:
                raise InputError("INPUT is rotated or not north-up; QGIS renders north-up maps only: warp it "
                                 "north-up first (Raster > Projections > Warp)")
            if abs(abs(t.e) - t.a) * max(src.width, src.height) > 0.01 * t.a:
                raise InputError(f"INPUT's pixels are not square ({t.a:g} x {-t.e:g}); QGIS renders square "
                                 f"pixels only: warp the raster to square pixels first (gdalwarp -tr)")
            grid = rendering.Grid(crs=self.crs, x_min=t.c, y_max=t.f, pixel_size=t.a,
                                  width=src.width, height=src.height)
            crs, transform = src.crs, src.transform

        coverage = Coverage()
        started = time.perf_counter()
        feedback.info(f"rendering {len(self.clones)} layer(s) onto {grid.width} x {grid.height} px "
                      f"at {grid.pixel_size:g} map units per pixel")
        with rasterio.Env(**GDAL_ENV), atomic_path(output) as tmp:
            writer = GeoTiffWriter(tmp, width=grid.width, height=grid.height, dtype="uint8", crs=crs,
                                   transform=transform, nodata=None, band_names=BAND_NAMES)
            try:
                def sink(rgb):
                    coverage.add(rgb)
                    writer.write_rows(rgb)

                rendering.render_layers_to_grid(
                    self.clones, grid, self.background, sink, feedback,
                    transform_context=context.transformContext(),
                    expression_context=QgsExpressionContext(context.expressionContext()))
                writer.close()
            except rendering.RenderError as exc:
                writer.abort()
                raise QgsProcessingException(str(exc)) from None
            except BaseException:
                writer.abort()
                raise
            if legend_path:
                with atomic_path(legend_path) as tmp_legend:
                    with open(tmp_legend, "w", encoding="utf-8") as f:
                        f.write(legend_json(legend))
        feedback.info(f"rendered in {time.perf_counter() - started:.1f} s; share of pixels per legend colour: "
                      + coverage.summary(legend))
        if list(coverage.counts) == [coverage.code(legend["background"])] and qgs_feedback is not None:
            qgs_feedback.pushWarning("every pixel of the target is background: no layer draws inside the raster, "
                                     "although their extents overlap it")
        results = {"OUTPUT": output}
        if legend_path:
            results["OUTPUT_LEGEND"] = legend_path
        return results


def legend_json(legend: dict) -> str:
    """The legend as JSON, one class per line."""
    lines = [f" {json.dumps(label)}: {json.dumps(list(rgb))}" for label, rgb in legend.items()]
    return "{\n" + ",\n".join(lines) + "\n}\n"


class Coverage:
    """Counts pixels per colour over the strips, to report each legend class's share."""

    def __init__(self):
        self.counts: dict[int, int] = {}
        self.total = 0

    def add(self, rgb: np.ndarray) -> None:
        codes = (rgb[0].astype(np.uint32) << 16) | (rgb[1].astype(np.uint32) << 8) | rgb[2]
        values, counts = np.unique(codes, return_counts=True)
        for v, c in zip(values.tolist(), counts.tolist()):
            self.counts[v] = self.counts.get(v, 0) + c
        self.total += codes.size

    @staticmethod
    def code(rgb) -> int:
        r, g, b = rgb
        return (r << 16) | (g << 8) | b

    def summary(self, legend: dict) -> str:
        total = max(self.total, 1)
        parts = [f"{label} {100 * self.counts.get(self.code(rgb), 0) / total:.1f} %" for label, rgb in legend.items()]
        known = sum(self.counts.get(self.code(rgb), 0) for rgb in {tuple(c) for c in legend.values()})
        parts.append(f"not in the legend {100 * (self.total - known) / total:.1f} %")
        return ", ".join(parts)
