"""How SatGen's outputs look when QGIS loads them: maps in their exact colours with the model's legend,
masks and fill sources with a palette and labels, uncertainty with a colour ramp, previews as they
are. QGIS's default for a 3-band byte raster stretches each band (cumulative cut), which shifts a
map's class colours; these renderers do not.

`when_loaded(context, path, style)` attaches `style(layer)` to an output that the run will load
(Toolbox, or a graphical model's final output); qgis_process and processing.run load nothing.
"""

from __future__ import annotations

from collections.abc import Callable

from qgis.core import (
    Qgis,
    QgsColorRampShader,
    QgsMapLayerLegend,
    QgsMultiBandColorRenderer,
    QgsPalettedRasterRenderer,
    QgsProcessingLayerPostProcessorInterface,
    QgsRasterBandStats,
    QgsRasterLayer,
    QgsRasterShader,
    QgsRasterSymbolLegendNode,
    QgsRectangle,
    QgsSingleBandPseudoColorRenderer,
)
from qgis.PyQt import sip
from qgis.PyQt.QtGui import QColor

# QGIS 3.30+ names it Qgis.ShaderInterpolationMethod.Linear (and QGIS 4 drops the old name)
INTERPOLATED = getattr(getattr(Qgis, "ShaderInterpolationMethod", None), "Linear", None) or getattr(
    QgsColorRampShader, "Interpolated", None)

_PENDING: list = []  # post-processors stay alive (QGIS may not own them)
SAMPLE = 250_000  # pixels the uncertainty ramp's statistics are taken from


class _Style(QgsProcessingLayerPostProcessorInterface):
    def __init__(self, style: Callable[[QgsRasterLayer], None]):
        super().__init__()
        self.style = style

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802
        if isinstance(layer, QgsRasterLayer) and layer.isValid():
            self.style(layer)
            layer.triggerRepaint()


def when_loaded(context, path: str | None, style: Callable[[QgsRasterLayer], None]) -> None:
    """Style the output at `path` with `style(layer)` when the run loads it into the project."""
    if not path or not context.willLoadLayerOnCompletion(path):
        return
    post = _Style(style)
    _PENDING.append(post)  # kept for the session: QGIS may still point to it after a batch of runs
    context.layerToLoadOnCompletionDetails(path).setPostProcessor(post)


class ClassLegend(QgsMapLayerLegend):
    """A layer-tree legend of colour patches with labels (for an RGB map drawn in a legend's colours)."""

    def __init__(self, entries: list[tuple[str, QColor]]):
        super().__init__()
        self.entries = entries

    def createLayerTreeModelLegendNodes(self, node_layer):  # noqa: N802
        nodes = [QgsRasterSymbolLegendNode(node_layer, color, label) for label, color in self.entries]
        for node in nodes:  # the layer tree owns and deletes them; Python must not (a crash otherwise)
            sip.transferto(node, None)
        return nodes


def rgb_exact(legend: dict | None = None) -> Callable[[QgsRasterLayer], None]:
    """Bands 1-3 as red, green, blue with no stretch (0-255 as written); with `legend`
    {label: [r, g, b]}, the legend's classes under the layer."""
    def style(layer: QgsRasterLayer) -> None:
        layer.setRenderer(QgsMultiBandColorRenderer(layer.dataProvider(), 1, 2, 3))
        if legend:
            layer.setLegend(ClassLegend([(label, QColor(*rgb[:3])) for label, rgb in legend.items()]))
    return style


def palette(classes: list[tuple[int, str, QColor]]) -> Callable[[QgsRasterLayer], None]:
    """Band 1 as classes (value, label, colour)."""
    def style(layer: QgsRasterLayer) -> None:
        layer.setRenderer(QgsPalettedRasterRenderer(layer.dataProvider(), 1, [
            QgsPalettedRasterRenderer.Class(value, color, label) for value, label, color in classes]))
    return style


CLOUD_MASK = palette([(0, "clear", QColor(0, 0, 0, 0)), (1, "cloud", QColor(255, 64, 160, 200))])

REFERENCE_COLOURS = [(31, 119, 180), (44, 160, 44), (255, 127, 14), (148, 103, 189), (140, 86, 75), (23, 190, 207),
                     (188, 189, 34), (127, 127, 127)]


def fill_source(references: int) -> Callable[[QgsRasterLayer], None]:
    """inpaint_clouds' OUTPUT_SOURCE: 0 the input's own pixel, 1..K a reference, 100 the model."""
    classes = [(0, "input's own pixel", QColor(0, 0, 0, 0))]
    for k in range(1, references + 1):
        classes.append((k, f"reference {k}", QColor(*REFERENCE_COLOURS[(k - 1) % len(REFERENCE_COLOURS)])))
    classes.append((100, "model", QColor(214, 39, 40)))
    return palette(classes)


def ramp(top_percentile: float = 98.0) -> Callable[[QgsRasterLayer], None]:
    """Band 1 in a yellow-to-purple ramp from 0 to its `top_percentile` percentile (an uncertainty)."""
    def style(layer: QgsRasterLayer) -> None:
        provider = layer.dataProvider()  # statistics from a sample: this runs on QGIS's main thread
        top = provider.bandStatistics(1, QgsRasterBandStats.Max, QgsRectangle(), SAMPLE).maximumValue
        histogram = provider.histogram(1, 256, float("nan"), float("nan"), QgsRectangle(), SAMPLE)
        if histogram.histogramVector and histogram.binCount:
            total, seen = sum(histogram.histogramVector), 0
            for i, count in enumerate(histogram.histogramVector):
                seen += count
                if total and seen / total >= top_percentile / 100:
                    top = histogram.minimum + (i + 1) * (histogram.maximum - histogram.minimum) / histogram.binCount
                    break
        top = top if top and top > 0 else 1.0
        items = [QgsColorRampShader.ColorRampItem(top * f, QColor(*rgb), f"{top * f:.3g}")
                 for f, rgb in ((0.0, (255, 255, 204)), (0.5, (253, 141, 60)), (1.0, (128, 0, 128)))]
        shader_function = QgsColorRampShader(0.0, top)
        shader_function.setColorRampType(INTERPOLATED)
        shader_function.setColorRampItemList(items)
        shader = QgsRasterShader()
        shader.setRasterShaderFunction(shader_function)
        renderer = QgsSingleBandPseudoColorRenderer(provider, 1, shader)
        renderer.setClassificationMin(0.0)
        renderer.setClassificationMax(top)
        layer.setRenderer(renderer)
    return style
