"""Map targets, the engine half: RGB strips written as a georeferenced GeoTIFF with the
legend beside it, colours counted, and nothing left behind on an error."""

import json

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from engine.errors import Cancelled, InputError
from engine.metrics import legend_colors
from engine.translation.targets import Coverage, legend_json, target_grid, write_map_target

LEGEND = {"forest": [100, 165, 90], "water": [170, 211, 223], "background": [242, 239, 233]}


def satellite(path, transform=None, width=7, height=5):
    transform = transform or from_origin(500000.0, 5800000.0, 10.0, 10.0)
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=4, dtype="uint16",
                       crs="EPSG:32633", transform=transform) as dst:
        dst.write(np.ones((4, height, width), np.uint16))
    return path


def tiny_map(height=5, width=7) -> np.ndarray:
    rgb = np.empty((3, height, width), np.uint8)
    rgb[:] = np.array(LEGEND["background"], np.uint8)[:, None, None]
    rgb[:, :2, :3] = np.array(LEGEND["forest"], np.uint8)[:, None, None]  # 6 px
    rgb[:, 4, :] = np.array(LEGEND["water"], np.uint8)[:, None]  # 7 px
    rgb[:, 3, 6] = [1, 2, 3]  # 1 px not in the legend
    return rgb


def test_strips_become_a_georeferenced_rgb_geotiff_with_its_legend(tmp_path):
    grid = target_grid(satellite(tmp_path / "s2.tif"))
    assert (grid.width, grid.height, grid.x_min, grid.y_max, grid.pixel_size) == (7, 5, 500000.0, 5800000.0, 10.0)
    rgb = tiny_map()

    coverage = write_map_target(tmp_path / "map.tif", grid, (rgb[:, r:r + 2] for r in range(0, 5, 2)),
                                LEGEND, tmp_path / "map.json")

    with rasterio.open(tmp_path / "map.tif") as out, rasterio.open(tmp_path / "s2.tif") as src:
        assert (out.crs, out.transform, out.shape, out.count) == (src.crs, src.transform, src.shape, 3)
        assert out.dtypes == ("uint8",) * 3 and out.nodata is None
        assert out.descriptions == ("red", "green", "blue")
        assert np.array_equal(out.read(), rgb)
    text = (tmp_path / "map.json").read_text()
    assert text == legend_json(LEGEND)
    assert text.count("\n") == len(LEGEND) + 2  # braces, and one class per line
    assert json.loads(text) == LEGEND
    assert legend_colors(json.loads(text))[0] == list(LEGEND)  # training reads it back
    assert coverage.total == 35
    assert coverage.summary(LEGEND) == ("forest 17.1 %, water 20.0 %, background 60.0 %, "
                                        "not in the legend 2.9 %")
    assert not coverage.only(LEGEND["background"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.json", "map.tif", "s2.tif"]


def test_coverage_of_only_background():
    coverage = Coverage()
    coverage.add(np.full((3, 4, 4), 9, np.uint8))
    assert coverage.only([9, 9, 9]) and not coverage.only([9, 9, 8])


def failing_strips(rgb):
    yield rgb[:, :2]
    raise Cancelled("cancelled by the user; nothing was written")


@pytest.mark.parametrize("strips, error, message", [
    (lambda rgb: failing_strips(rgb), Cancelled, "cancelled"),
    (lambda rgb: [rgb[:, :3]], InputError, "cover 3 of the target grid's 5 rows"),
    (lambda rgb: [rgb, rgb[:, :1]], InputError, "more rows"),
    (lambda rgb: [rgb[:, :, :6]], InputError, r"\(3, rows, 7\) uint8"),
    (lambda rgb: [rgb.astype(np.float32)], InputError, "uint8 RGB array"),
])
def test_a_failed_write_leaves_nothing(tmp_path, strips, error, message):
    grid = target_grid(satellite(tmp_path / "s2.tif"))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(error, match=message):
        write_map_target(out / "map.tif", grid, strips(tiny_map()), LEGEND, out / "map.json")
    assert list(out.iterdir()) == []


def test_rotated_or_non_square_inputs_are_refused(tmp_path):
    from affine import Affine

    with pytest.raises(InputError, match="not north-up"):
        target_grid(satellite(tmp_path / "rotated.tif", Affine(10, 1, 500000, 1, -10, 5800000)))
    with pytest.raises(InputError, match=r"not square \(10 x 20\).*gdalwarp -tr"):
        target_grid(satellite(tmp_path / "oblong.tif", from_origin(500000, 5800000, 10, 20)))
