"""Outputs are written whole or not at all, and never over an input.

A full disk or a file-size limit during the write (simulated with RLIMIT_FSIZE, as
`ulimit -f` does) must end in a clear error, leave no partial file and leave a good
file already under the output's name untouched, including when GDAL's last flush at
close fails without a word. Outputs that name an input, and cancelled or refused
synthesis runs, must lose nothing either.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time

import numpy as np
import pytest

from engine.errors import InputError, OutputError
from engine.fileio import atomic_folder, atomic_path, check_not_same_file
from engine.inpainting.apply import MaskOptions, inpaint
from engine.raster import verify_geotiff
from helpers import ROOT, make_model, smooth_image, write_raster


def _run_limited(args: list[str], limit: int, threads: int | None = None) -> subprocess.CompletedProcess:
    """`python -m engine ARGS` with files limited to `limit` bytes (Python ignores SIGXFSZ: writes fail);
    `threads`: SATGEN_THREADS for the run."""
    def cap():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = {**os.environ, **({"SATGEN_THREADS": str(threads)} if threads else {})}
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=ROOT, capture_output=True, text=True,
                          preexec_fn=cap, timeout=300, env=env)


def _no_parts(folder) -> bool:
    return not [p.name for p in folder.iterdir() if ".part" in p.name]


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("outputs")
    raster = write_raster(tmp / "in.tif", smooth_image(3, 300, 300, dtype="uint16"))
    model = make_model(tmp / "m.satgen", in_bands=3, out_bands=3, tile=64, overlap=16)
    good = tmp / "good.tif"
    done = subprocess.run([sys.executable, "-m", "engine", "apply", "--model", str(model), "--input", str(raster),
                           "--output", str(good), "--device", "cpu"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return tmp, raster, model, good


@pytest.mark.slow
@pytest.mark.parametrize("threads", [2, 4])
def test_a_write_cut_short_never_replaces_a_good_file(scene, tmp_path, threads):
    """On 2 threads the writer thread compresses; on more, GDAL's own threads do (a failed write then
    shows only when the file is checked at close)."""
    _, raster, model, good = scene
    size = good.stat().st_size
    out = tmp_path / "out.tif"
    failures = []
    for share in (0.05, 0.5, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 1.0):
        out.write_bytes(good.read_bytes())  # a good file is already there
        run = _run_limited(["apply", "--model", str(model), "--input", str(raster), "--output", str(out),
                            "--device", "cpu"], int(size * share), threads)
        assert out.read_bytes() == good.read_bytes()  # untouched, or replaced by an identical complete file
        assert _no_parts(tmp_path)
        if share == 1.0:
            assert run.returncode == 0, run.stderr
        else:
            assert run.returncode == 2, (share, run.stderr)  # an error, never "wrote ..."
            assert "Traceback" not in run.stderr and f"{out}:" in run.stderr
            assert "disk may be full or a file-size limit" in run.stderr or "file-size limit is reached" in \
                run.stderr
            failures.append(run.stderr.strip().splitlines()[-1])
    # both ways a write fails are met: while writing, and in GDAL's silent last flush at close
    assert threads > 2 or any("writing the GeoTIFF failed" in f for f in failures)
    assert any("not written completely" in f or "cannot be read back" in f for f in failures), failures


@pytest.mark.slow
def test_a_model_file_cut_short_is_never_published(scene, tmp_path):
    _, _, model, _ = scene
    target = tmp_path / "copy.satgen"
    code = ("import sys; from engine.modelfile import load_model, save_model; "
            f"m = load_model({str(model)!r}); save_model({str(target)!r}, m.module, m.card)")
    size = model.stat().st_size
    for limit in (size // 2, size - 1):
        run = subprocess.run([sys.executable, "-c", f"{code}"], cwd=ROOT, capture_output=True, text=True,
                             preexec_fn=lambda limit=limit: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
        assert run.returncode != 0 and "OutputError" in run.stderr and "file-size limit" in run.stderr
        assert not target.exists() and _no_parts(tmp_path)


def test_verify_geotiff_refuses_a_truncated_file(scene, tmp_path):
    _, _, _, good = scene
    verify_geotiff(str(good))
    data = good.read_bytes()
    for cut in (len(data) // 2, len(data) - 100):
        broken = tmp_path / f"cut{cut}.tif"
        broken.write_bytes(data[:cut])
        with pytest.raises(OutputError, match="disk may be full"):
            verify_geotiff(str(broken))


def test_outputs_never_overwrite_an_input(scene, tmp_path):
    _, raster, model, _ = scene
    before = model.read_bytes()
    with pytest.raises(InputError, match="would overwrite the input"):
        check_not_same_file([raster, model], [tmp_path / "new.tif", model])
    with pytest.raises(InputError, match="same file"):
        check_not_same_file([raster], [tmp_path / "a.tif", tmp_path / "a.tif"])
    from engine.pipeline import TileOptions, apply_model

    with pytest.raises(InputError, match="would overwrite the input"):  # the model file is an input too
        apply_model(model, raster, model, TileOptions(device="cpu"))
    assert model.read_bytes() == before


def test_inpaint_never_writes_over_its_mask_or_qa_raster(tmp_path):
    image = write_raster(tmp_path / "img.tif", smooth_image(4, 64, 64, dtype="uint16"))
    mask_values = np.zeros((1, 64, 64), np.uint8)
    mask_values[0, 20:40, 20:40] = 1
    mask = write_raster(tmp_path / "mask.tif", mask_values)
    qa = write_raster(tmp_path / "qa.tif", (mask_values.astype(np.uint16) << 14) * 3)
    model = make_model(tmp_path / "inp.satgen", in_bands=5, out_bands=4, task="inpaint", tile=32, overlap=8)
    kept = {p: p.read_bytes() for p in (image, mask, qa, model)}
    cases = [(MaskOptions(mask=str(mask)), dict(output=mask)),
             (MaskOptions(mask=str(mask)), dict(output_mask=mask)),
             (MaskOptions(qa=str(qa), qa_band=1, qa_expression="bits(14, 15) == 3"), dict(output=qa)),
             (MaskOptions(qa=str(qa), qa_band=1, qa_expression="bits(14, 15) == 3"), dict(output_mask=qa)),
             (MaskOptions(mask=str(mask)), dict(output=tmp_path / "o.tif", output_mask=tmp_path / "o.tif"))]
    for masks, outs in cases:
        with pytest.raises(InputError, match="overwrite the input|same file"):
            inpaint(image, outs.get("output", tmp_path / "out.tif"), model, masks,
                    output_mask=outs.get("output_mask"))
    assert {p: p.read_bytes() for p in kept} == kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.tif", "inp.satgen", "mask.tif", "qa.tif"]


def test_an_output_that_is_a_folder_or_in_a_missing_folder_is_refused(tmp_path):
    with pytest.raises(InputError, match="is a folder"), atomic_path(tmp_path):
        pass
    with pytest.raises(InputError, match="does not exist"), atomic_path(tmp_path / "no" / "x.tif"):
        pass


def test_an_unwritable_folder_is_a_message_not_a_traceback(scene):
    # /proc takes no new files, not even from root; a chmod-ed folder only stops other users
    with pytest.raises(OutputError, match="cannot write into the folder /proc"), atomic_path("/proc/out.tif"):
        pass
    _, raster, model, _ = scene
    run = subprocess.run([sys.executable, "-m", "engine", "apply", "--model", str(model), "--input", str(raster),
                          "--output", "/proc/map.tif", "--device", "cpu"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 2 and "Traceback" not in run.stderr and "cannot write into the folder /proc" in \
        run.stderr, run.stderr


def test_atomic_folder_appears_whole_or_not_at_all(tmp_path):
    target = tmp_path / "set"
    with pytest.raises(RuntimeError), atomic_folder(target) as work:
        (work / "a").mkdir()
        (work / "a" / "1.txt").write_text("x")
        raise RuntimeError("killed half way")
    assert list(tmp_path.iterdir()) == []  # nothing, not even an empty folder or a hidden part
    with atomic_folder(target) as work:
        (work / "a").mkdir()
        (work / "a" / "1.txt").write_text("first")
        (work / "manifest.csv").write_text("one")
    assert (target / "a" / "1.txt").read_text() == "first"
    with atomic_folder(target) as work:  # into an existing folder: new files join, same names are replaced
        (work / "b").mkdir()
        (work / "b" / "2.txt").write_text("second")
        (work / "manifest.csv").write_text("two")
    assert sorted(str(p.relative_to(target)) for p in target.rglob("*.*")) == ["a/1.txt", "b/2.txt", "manifest.csv"]
    assert (target / "manifest.csv").read_text() == "two" and [p.name for p in tmp_path.iterdir()] == ["set"]
    assert not [p for p in target.iterdir() if p.name.startswith(".")]  # its temporary folder (inside) is gone
    with pytest.raises(InputError, match="is a folder, where"), atomic_folder(target) as work:
        (work / "b.txt").write_text("a file where a folder is")  # nothing moves when one file cannot
        (work / "manifest.csv").write_text("three")
        (work / "b").mkdir(exist_ok=True)
        (work / "b" / "x").write_text("")
        (target / "b.txt").mkdir()
    assert (target / "manifest.csv").read_text() == "two"


def test_a_long_output_name_keeps_working_or_says_so(tmp_path):
    with atomic_path(tmp_path / ("x" * 200 + ".tif")) as tmp, open(tmp, "wb") as f:
        f.write(b"ok")  # the temporary name keeps only part of the stem
    assert (tmp_path / ("x" * 200 + ".tif")).read_bytes() == b"ok"
    with pytest.raises(InputError, match="too long"), atomic_path(tmp_path / ("y" * 300 + ".tif")):
        pass



def test_leftovers_of_a_killed_run_are_cleaned_by_the_next(tmp_path):
    from engine.fileio import _OWNER, STALE_SECONDS

    host = _OWNER.rsplit("-", 1)[0]
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(done.stdout)  # a process that has ended
    killed = tmp_path / f".out.{host}-{dead}.abc123.part.tif"
    killed.write_bytes(b"half a GeoTIFF")
    (tmp_path / (killed.name + ".aux.xml")).write_text("<PAMDataset/>")
    hour_ago = time.time() - STALE_SECONDS - 60
    os.utime(killed, (hour_ago, hour_ago))
    recent = tmp_path / f".out.{host}-{dead}.jkl012.part.tif"  # writer gone, but changed lately: kept (it may
    recent.write_bytes(b"recent")  # be a writer in another PID namespace that only looks gone from here)
    live = tmp_path / f".out.{host}-{os.getpid()}.def456.part.tif"  # a writer still at work: kept
    live.write_bytes(b"in progress")
    elsewhere = tmp_path / f".out.otherhost-{dead}.ghi789.part.tif"  # another machine's (shared folder): kept
    elsewhere.write_bytes(b"theirs")
    with atomic_path(tmp_path / "out.tif") as tmp:
        with open(tmp, "wb") as f:
            f.write(b"new")
    for kept in (live, elsewhere):
        os.utime(kept, (hour_ago, hour_ago))
    with atomic_path(tmp_path / "out.tif") as tmp:
        with open(tmp, "wb") as f:
            f.write(b"newer")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, elsewhere.name, recent.name, "out.tif"])


def test_a_raster_output_named_png_is_refused_before_any_work(scene, tmp_path):
    _, raster, model, _ = scene
    from engine.pipeline import TileOptions, apply_model

    for name in ("map.png", "map.jpg", "map"):
        with pytest.raises(InputError, match="SatGen writes GeoTIFF"):
            apply_model(model, raster, tmp_path / name, TileOptions(device="cpu"))
    assert list(tmp_path.iterdir()) == []


def test_reference_bands_without_a_reference_are_refused(tmp_path):
    image = write_raster(tmp_path / "img.tif", smooth_image(4, 64, 64, dtype="uint16"))
    mask = write_raster(tmp_path / "mask.tif", np.ones((1, 64, 64), np.uint8))
    with pytest.raises(InputError, match="without a reference image"):
        inpaint(image, tmp_path / "out.tif", None, MaskOptions(mask=str(mask)), reference_bands=[1, 2, 3, 4])


@pytest.mark.slow
def test_overviews_cut_short_never_publish_the_output(scene, tmp_path):
    """Overviews are written after the full-resolution data: a limit met there is an error too."""
    _, raster, model, good = scene
    args = ["apply", "--model", str(model), "--input", str(raster), "--device", "cpu", "--overviews"]
    with_overviews = tmp_path / "full.tif"
    assert subprocess.run([sys.executable, "-m", "engine", *args, "yes", "--output", str(with_overviews)],
                          cwd=ROOT, capture_output=True, text=True).returncode == 0
    full, plain = with_overviews.stat().st_size, good.stat().st_size
    assert full > plain
    out = tmp_path / "out.tif"
    for limit in (plain + 100, (plain + full) // 2, full - 10):
        run = _run_limited([*args, "yes", "--output", str(out)], limit)
        assert run.returncode == 2 and "Traceback" not in run.stderr, (limit, run.stderr)
        assert "overviews" in run.stderr or "not written completely" in run.stderr, run.stderr
        assert not out.exists() and _no_parts(tmp_path)
    verify_geotiff(str(with_overviews), overview_level=0)
