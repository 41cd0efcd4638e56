"""The bench's seam metric and its centre-crop stitcher, on synthetic images whose
answer is known; no model, no I/O."""

import numpy as np
import pytest

from engine.devtools.bench import stitch_centre_crop
from engine.metrics import cut_lines, seam_ratio
from engine.windows import TileGrid


def smooth(bands=3, size=480, seed=0):
    """A smooth random field: neighbouring differences alike everywhere."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / 23.0
    return np.stack([np.sin(x * rng.uniform(0.5, 1.5) + b) * np.cos(y * rng.uniform(0.5, 1.5) - b) * 100 + 128
                     for b in range(bands)])


def test_seam_ratio_is_one_on_a_smooth_image():
    img = smooth()
    grid = TileGrid(480, 480, 64, 16)
    lines = cut_lines(grid.row_offsets, 16, size=480), cut_lines(grid.col_offsets, 16, size=480)
    assert lines[1][:3] == [56, 104, 152]
    assert seam_ratio(img, *lines) == pytest.approx(1.0, abs=0.15)


def test_seam_ratio_finds_an_artificial_seam():
    img = smooth()
    grid = TileGrid(480, 480, 64, 16)
    lines = cut_lines(grid.row_offsets, 16, size=480), cut_lines(grid.col_offsets, 16, size=480)
    seamed = img.copy()
    for i, x in enumerate(lines[1]):  # a step of alternating sign at every cut line
        seamed[:, :, x:] += 4.0 if i % 2 == 0 else -4.0
    for i, y in enumerate(lines[0]):
        seamed[:, y:, :] += 4.0 if i % 2 == 0 else -4.0
    assert seam_ratio(seamed, *lines) > 1.5
    # only the lines carry the seam: elsewhere the ratio stays about 1
    shifted = [x + 7 for x in lines[0]], [x + 7 for x in lines[1]]
    assert seam_ratio(seamed, *shifted) == pytest.approx(1.0, abs=0.15)


@pytest.mark.parametrize("size,tile,overlap,scale", [((2, 100, 137), 32, 8, 1), ((1, 64, 64), 16, 5, 1),
                                                      ((3, 20, 9), 32, 8, 1), ((2, 45, 70), 16, 4, 2)])
def test_centre_crop_stitching_of_a_pointwise_model_is_exact(size, tile, overlap, scale):
    x = np.random.default_rng(1).standard_normal(size).astype(np.float32)

    def predict(batch):
        return (2 * batch + 1).repeat(scale, 2).repeat(scale, 3)

    out = stitch_centre_crop(x, tile, overlap, predict, scale=scale, batch_size=3)
    np.testing.assert_allclose(out, (2 * x + 1).repeat(scale, 1).repeat(scale, 2), atol=1e-6)


def test_centre_crop_stitching_cuts_where_cut_lines_say():
    """Each tile's output is a constant (its index): the output changes exactly at the lines."""
    x = np.zeros((1, 300, 300), np.float32)
    calls = []

    def predict(batch):
        calls.append(len(batch))
        start = sum(calls[:-1])
        return np.stack([np.full(b.shape, start + i, np.float32) for i, b in enumerate(batch)])

    out = stitch_centre_crop(x, 64, 16, predict, batch_size=4)
    grid = TileGrid(300, 300, 64, 16)
    changes = np.flatnonzero(np.diff(out[0, 0])) + 1
    assert list(changes) == cut_lines(grid.col_offsets, 16, size=300)
    changes = np.flatnonzero(np.diff(out[0, :, 0])) + 1
    assert list(changes) == cut_lines(grid.row_offsets, 16, size=300)
    assert seam_ratio(out, *[cut_lines(grid.row_offsets, 16, size=300)] * 2) > 100


def test_quick_bench_writes_a_report(tmp_path):
    """`python -m engine bench --quick`: every figure present, on real sample imagery."""
    import json

    from engine.cli import build_parser
    from engine.devtools.bench import DEFAULT_INPUT
    from helpers import ROOT

    if not (ROOT / DEFAULT_INPUT).exists():
        pytest.skip("sample imagery missing: run `make data`")
    out = tmp_path / "bench.json"
    args = build_parser().parse_args(["bench", "--quick", "--sizes", "256,512", "--input",
                                      str(ROOT / DEFAULT_INPUT), "--out", str(out), "--work", str(tmp_path / "work")])
    assert args.func(args) == 0
    report = json.loads(out.read_text())
    p = report["pipeline"]
    assert 0 < p["efficiency"] < 2 and p["tiles"] > 0 and p["mp_per_s"] > 0
    assert set(p["peak_rss_mb"]) == {"256", "512"} and p["peak_rss_ratio_512_256"] > 0.5
    assert 0.5 < p["seam_boundary_ratio"] < 2 and 0.5 < p["seam_boundary_ratio_crop"] < 2
    assert p["seam_psnr_db"] is None or p["seam_psnr_db"] > 10
    assert report["model"]["weights"] == "random init, seed 0"
    assert set(report["goals"]) == {"efficiency", "peak_rss_ratio", "seam_boundary_ratio", "seam_vs_crop",
                                    "null_model_vs_gdal"}
    assert p["null_model_vs_gdal"] > 0 and p["gdal_translate_mp_per_s"] > 0


def test_bench_only_efficiency_writes_its_own_report(tmp_path):
    """`python -m engine bench --only efficiency`: the efficiency runs and the profile, nothing else."""
    import json

    from engine.cli import build_parser
    from engine.devtools.bench import DEFAULT_INPUT
    from helpers import ROOT

    if not (ROOT / DEFAULT_INPUT).exists():
        pytest.skip("sample imagery missing: run `make data`")
    work = tmp_path / "work"
    args = build_parser().parse_args(["bench", "--quick", "--only", "efficiency", "--repeats", "2", "--input",
                                      str(ROOT / DEFAULT_INPUT), "--work", str(work)])
    assert args.func(args) == 0
    report = json.loads((work / "bench_efficiency.json").read_text())
    eff = report["details"]["efficiency"]
    assert 0 < report["pipeline"]["efficiency"] < 2 and eff["repeats"] == 2 and len(eff["runs_forward_seconds"]) == 2
    assert "other_processes_cpu" in eff
    assert "  read (RollingReader.read)" in report["details"]["profile"]["wall_seconds"]
    assert set(report["goals"]) == {"efficiency"} and "rss_runs" not in report["details"]
    assert not list(work.glob("canvas_*")) and not list(work.glob("seam_*"))  # no memory or seam runs


def test_bench_only_gpu_smoke_run_on_the_cpu(tmp_path):
    """`bench --only gpu`: refused without a GPU, but for --quick, whose smoke run writes every GPU figure."""
    import json

    from engine.cli import build_parser
    from engine.devtools.bench import DEFAULT_INPUT
    from helpers import ROOT

    if not (ROOT / DEFAULT_INPUT).exists():
        pytest.skip("sample imagery missing: run `make data`")
    work = tmp_path / "work"
    common = ["bench", "--only", "gpu", "--device", "cpu", "--input", str(ROOT / DEFAULT_INPUT), "--work", str(work)]
    with pytest.raises(SystemExit, match="CUDA"):
        build_parser().parse_args(common).func(build_parser().parse_args(common))
    args = build_parser().parse_args([*common, "--quick"])
    assert args.func(args) == 0
    report = json.loads((work / "bench_gpu.json").read_text())
    gpu = report["gpu"]
    assert gpu["device"] == "cpu (smoke run)" and gpu["mp_per_s"] > 0 and gpu["null_model_vs_gdal_all_cores"] > 0
    assert 0 < gpu["efficiency"] < 2 and set(report["goals"]) == {"efficiency", "mp_per_s",
                                                                 "null_model_vs_gdal_all_cores"}


def test_gdal_copy_matches_gdal_translate(tmp_path):
    """The in-process GDAL copy (for machines without gdal_translate) writes what gdal_translate writes."""
    import shutil
    import subprocess

    import rasterio

    from engine.devtools.bench import gdal_copy
    from helpers import smooth_image, write_raster

    if shutil.which("gdal_translate") is None:
        pytest.skip("gdal_translate missing")
    src = write_raster(tmp_path / "in.tif", smooth_image(4, 300, 280))
    ranges = [(1000.0, 40000.0), (500.0, 60000.0), (0.0, 65535.0)]
    options = {"COMPRESS": "deflate", "PREDICTOR": 2, "TILED": "YES", "BLOCKXSIZE": 256, "BLOCKYSIZE": 256}
    gdal_copy(str(src), str(tmp_path / "ours.tif"), ranges, options, all_cores=True)
    command = ["gdal_translate", "-q", "-ot", "Byte", "-b", "1", "-b", "2", "-b", "3"]
    for b, (lo, hi) in enumerate(ranges, start=1):
        command += [f"-scale_{b}", f"{lo:g}", f"{hi:g}", "0", "255"]
    for key, value in options.items():
        command += ["-co", f"{key}={value}"]
    subprocess.run([*command, str(src), str(tmp_path / "theirs.tif")], check=True)  # nosec B603
    with rasterio.open(tmp_path / "ours.tif") as a, rasterio.open(tmp_path / "theirs.tif") as b:
        assert a.profile == b.profile and (a.read() == b.read()).all()
