"""Outputs load with styles that fit (satgen_qgis/styles.py): run with loading, as the Toolbox does, and
look at the loaded layers' renderers and legends."""

from qgis.core import QgsMultiBandColorRenderer, QgsPalettedRasterRenderer, QgsProject, QgsSingleBandPseudoColorRenderer


def loaded(path):
    (layer,) = [lyr for lyr in QgsProject.instance().mapLayers().values() if lyr.source() == str(path)]
    return layer


def test_a_translated_map_loads_in_its_exact_colours_with_the_model_legend(satgen_provider, qgis_iface, real_raster,
                                                                           tmp_path):
    import processing

    from engine.modelfile import default_model, read_card

    out = tmp_path / "map.tif"
    processing.runAndLoadResults("satgen:translate", {"INPUT": str(real_raster), "OUTPUT": str(out)})
    layer = loaded(out)
    renderer = layer.renderer()
    assert isinstance(renderer, QgsMultiBandColorRenderer)  # not QGIS's default 2-98 % stretch of each band
    assert [renderer.redBand(), renderer.greenBand(), renderer.blueBand()] == [1, 2, 3]
    assert renderer.redContrastEnhancement() is None and renderer.blueContrastEnhancement() is None
    legend = read_card(default_model("translate")).legend
    node = QgsProject.instance().layerTreeRoot().findLayer(layer.id())
    labels = [n.data(0) for n in layer.legend().createLayerTreeModelLegendNodes(node)]
    assert labels == list(legend)


def test_inpainting_outputs_load_with_a_palette_and_a_ramp(satgen_provider, qgis_iface, tmp_path):
    import numpy as np
    import processing

    from helpers import cloud_scene, write_raster

    data, cloud = cloud_scene()
    scene, reference, mask = tmp_path / "scene.tif", tmp_path / "ref.tif", tmp_path / "mask.tif"
    write_raster(scene, data)
    write_raster(reference, (data * 1.02).astype(data.dtype))
    write_raster(mask, cloud.astype(np.uint8)[None])
    outs = {k: str(tmp_path / f"{k.lower()}.tif") for k in ("OUTPUT", "OUTPUT_MASK", "OUTPUT_SOURCE",
                                                             "OUTPUT_UNCERTAINTY")}
    processing.runAndLoadResults("satgen:inpaint_clouds", {"INPUT": str(scene), "MASK": str(mask),
                                                           "REFERENCE": [str(reference)], **outs})
    mask_renderer = loaded(outs["OUTPUT_MASK"]).renderer()
    assert isinstance(mask_renderer, QgsPalettedRasterRenderer)
    assert [(c.value, c.label) for c in mask_renderer.classes()] == [(0, "clear"), (1, "cloud")]
    source = loaded(outs["OUTPUT_SOURCE"]).renderer()
    assert [(c.value, c.label) for c in source.classes()] == [(0, "input's own pixel"), (1, "reference 1"),
                                                              (100, "model")]
    ramp = loaded(outs["OUTPUT_UNCERTAINTY"]).renderer()
    assert isinstance(ramp, QgsSingleBandPseudoColorRenderer)
    import rasterio

    with rasterio.open(outs["OUTPUT_UNCERTAINTY"]) as u:
        values = u.read(1)
    filled = values[np.isfinite(values) & (values > 0)]
    top = float(np.percentile(np.concatenate([filled, np.zeros(values.size - filled.size)]), 98))
    assert abs(ramp.classificationMax() - top) <= 0.02 * float(values[np.isfinite(values)].max())  # one bin
