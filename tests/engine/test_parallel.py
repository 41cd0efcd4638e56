"""Work spread over threads (engine.parallel): every row range done once, errors raised, and the
tile pipeline's output the same, pixel for pixel, however many threads it has."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import rasterio

from engine.errors import InputError
from engine.parallel import MIN_ROWS, THREADS_ENV, cpu_threads, in_parts
from engine.pipeline import TileOptions, apply_model
from engine.raster import RollingReader, decode_threads
from helpers import make_model, smooth_image, write_raster


@pytest.mark.parametrize("threads", [1, 2, 3, 7])
@pytest.mark.parametrize("n", [0, 1, MIN_ROWS * 2 - 1, MIN_ROWS * 2, 100, 1000])
def test_in_parts_covers_every_row_once(monkeypatch, threads, n):
    monkeypatch.setenv(THREADS_ENV, str(threads))
    seen = np.zeros(n, int)
    parts = []

    def work(lo, hi):
        seen[lo:hi] += 1
        parts.append((hi - lo, threading.current_thread() is threading.main_thread()))

    in_parts(work, n)
    assert (seen == 1).all()
    assert len(parts) == max(1, min(threads, n // MIN_ROWS))
    assert sum(here for _, here in parts) == 1  # one part on the calling thread, the rest on helpers
    assert len(parts) == 1 or min(size for size, _ in parts) >= MIN_ROWS


def test_in_parts_leaves_spare_threads(monkeypatch):
    monkeypatch.setenv(THREADS_ENV, "2")
    parts = []
    in_parts(lambda lo, hi: parts.append((lo, hi)), 10 * MIN_ROWS, spare=1)
    assert parts == [(0, 10 * MIN_ROWS)]
    monkeypatch.setenv(THREADS_ENV, "4")
    parts.clear()
    in_parts(lambda lo, hi: parts.append((lo, hi)), 10 * MIN_ROWS, spare=1)
    assert len(parts) == 3


def test_in_parts_raises_a_helpers_error_after_every_part_ran(monkeypatch):
    monkeypatch.setenv(THREADS_ENV, "4")
    done = []

    def work(lo, hi):
        done.append(lo)
        if lo > 0:
            raise ValueError(f"part at {lo}")

    with pytest.raises(ValueError, match="part at"):
        in_parts(work, 4 * MIN_ROWS)
    assert len(done) == 4


def test_in_parts_from_several_threads_at_once_and_nested(monkeypatch):
    """Two runs in one process (QGIS runs algorithms side by side) share the pool; a call from a helper
    thread does its work there instead of waiting on the pool it runs in."""
    monkeypatch.setenv(THREADS_ENV, "6")
    errors, totals = [], []

    def caller(n):
        try:
            for size in range(MIN_ROWS, n, 7):  # part counts from 1 to 6, in turn
                seen = np.zeros(size, int)

                def work(lo, hi, seen=seen):
                    seen[lo:hi] += 1
                    in_parts(lambda a, b: None, 4 * MIN_ROWS)  # nested

                in_parts(work, size)
                totals.append(int(seen.sum()) == size and bool((seen == 1).all()))
        except Exception as exc:  # noqa: BLE001 -- reported below
            errors.append(exc)

    threads = [threading.Thread(target=caller, args=(n,)) for n in (120, 200, 90)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and totals and all(totals)


def test_thread_count_from_the_environment(monkeypatch):
    monkeypatch.delenv(THREADS_ENV, raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert cpu_threads() >= 1
    cores = cpu_threads()
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # two processes of torchrun on this machine share its cores
    assert cpu_threads() == max(1, cores // 2)
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    monkeypatch.setenv(THREADS_ENV, "3")
    assert cpu_threads() == 3
    for bad in ("0", "many", "-2", "1000"):
        monkeypatch.setenv(THREADS_ENV, bad)
        with pytest.raises(InputError, match=THREADS_ENV):
            cpu_threads()


def _tiled(path, data, nodata):
    return write_raster(path, data, nodata=nodata, tiled=True, blockxsize=32, blockysize=32, compress="deflate")


def test_apply_gives_the_same_pixels_on_any_number_of_threads(tmp_path, monkeypatch):
    data = smooth_image(4, 150, 300)
    data[:, 40:45, 10:200] = 0  # nodata across several blocks
    raster = _tiled(tmp_path / "in.tif", data, nodata=0)
    model = make_model(tmp_path / "m.satgen", in_bands=4, out_bands=3, tile=64, overlap=16)
    outputs = {}
    for threads in (1, 2, 5):
        monkeypatch.setenv(THREADS_ENV, str(threads))
        with rasterio.open(raster) as src:
            # 300 px of 32 px blocks: 10 across, so every thread has whole blocks to decode
            assert decode_threads(src, [1, 2, 3, 4]) == threads
        out = tmp_path / f"out_{threads}.tif"
        apply_model(model, raster, out, TileOptions(device="cpu", batch_size=3))
        with rasterio.open(out) as dst:
            outputs[threads] = dst.read(masked=True)
    for threads in (2, 5):
        assert (outputs[threads].mask == outputs[1].mask).all()
        assert (outputs[threads].data == outputs[1].data).all()
    assert outputs[1].mask[:, 40:45, 10:200].all() and not outputs[1].mask.all()


def test_decoding_threads_get_whole_blocks_and_no_more_threads_than_blocks(tmp_path, monkeypatch):
    path = _tiled(tmp_path / "in.tif", smooth_image(1, 64, 100), nodata=None)  # 4 blocks across, the last short
    monkeypatch.setenv(THREADS_ENV, "8")
    with rasterio.open(path) as src:
        assert decode_threads(src, [1]) == 4
        handles = [rasterio.open(path) for _ in range(7)]
        try:
            reader = RollingReader(src, [1], max_rows=64, twins=handles)
            assert [(c0, c1) for _, c0, c1 in reader._parts] == [(0, 32), (32, 64), (64, 96), (96, 100)]
            reader.close()
        finally:
            for h in handles:
                h.close()


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
def test_apply_on_cuda_through_pinned_buffers_matches_the_cpu(tmp_path):
    data = smooth_image(4, 150, 300)
    raster = _tiled(tmp_path / "in.tif", data, nodata=None)
    model = make_model(tmp_path / "m.satgen", in_bands=4, out_bands=3, tile=64, overlap=16)
    outputs = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / f"out_{device}.tif"
        apply_model(model, raster, out, TileOptions(device=device, batch_size=3))
        with rasterio.open(out) as dst:
            outputs[device] = dst.read().astype(int)
    # the same network in float32 on either device: at most a rounding step apart
    assert np.abs(outputs["cuda"] - outputs["cpu"]).max() <= 1
