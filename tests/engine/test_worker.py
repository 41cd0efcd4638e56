"""Engine calls as data (engine/calls.py) and the engine as a subprocess (engine/worker.py), driven
the way the plugin drives it (satgen_qgis/engine_process.py, which needs no QGIS): real models, real
rasters, a real child process."""

import json
import subprocess
import sys
import threading

import numpy as np
import pytest
import rasterio

from engine import calls
from engine.errors import Cancelled, InputError, ModelFileError
from engine.pipeline import TileOptions
from engine.progress import Feedback
from helpers import ROOT, make_model, smooth_image, write_raster
from satgen_qgis import engine_process


class Recorder(Feedback):
    def __init__(self, cancel_after: float | None = None):
        self.fractions, self.messages, self.console_lines = [], [], []
        self.cancel_after = cancel_after

    def progress(self, fraction):
        self.fractions.append(fraction)

    def info(self, message):
        self.messages.append(message)

    def console(self, line):
        self.console_lines.append(line)

    def is_cancelled(self):
        return self.cancel_after is not None and bool(self.fractions) and self.fractions[-1] >= self.cancel_after


def test_a_call_round_trips_through_json_as_the_engine_types():
    call = calls.Call("apply_model", "m.satgen", "in.tif", "out.tif", TileOptions(tile_size=64, bands=[3, 2, 1]),
                      calls.FEEDBACK, normalize="scene")
    request = json.loads(json.dumps(call.request()))
    assert request["args"][3] == {"$obj": "pipeline:TileOptions", "fields": {
        "tile_size": 64, "overlap": None, "batch_size": 4, "device": "auto", "bands": [3, 2, 1], "overviews": "auto",
        "join": "geotiff", "blend": "auto"}}
    feedback = Feedback()
    args = [calls.decode_argument(a, feedback) for a in request["args"]]
    assert args[3] == TileOptions(tile_size=64, bands=[3, 2, 1]) and args[4] is feedback
    obj = calls.Obj("inpainting.apply:MaskOptions", detect=True, dilate=2)
    mask = calls.decode_argument(calls.encode_argument(obj), feedback)
    assert type(mask).__name__ == "MaskOptions" and mask.detect and mask.dilate == 2


def test_only_entry_points_and_engine_dataclasses_can_be_called():
    with pytest.raises(ValueError):
        calls.Call("os:system")
    with pytest.raises(InputError, match="no engine entry point"):
        calls.run({"call": "os:system", "args": ["true"]}, Feedback())
    for kind in ("os:PathLike", "../x:Y", "pipeline:TileGrid", "pipeline:np"):
        with pytest.raises(InputError):
            calls.decode_argument({"$obj": kind, "fields": {}}, Feedback())
    with pytest.raises(TypeError):
        calls.encode_argument(object())


def test_results_become_plain_data():
    from pathlib import Path

    result = calls.encode_result({"a": np.float32(0.5), "b": Path("/x"), "c": (np.int64(3),), "d": float("nan"),
                                  "e": TileOptions(tile_size=8)})
    assert result == {"a": 0.5, "b": "/x", "c": [3], "d": None, "e": {
        "tile_size": 8, "overlap": None, "batch_size": 4, "device": "auto", "bands": None, "overviews": "auto",
        "join": "geotiff", "blend": "auto"}}
    json.dumps(result, allow_nan=False)


def raster_and_model(tmp_path, size=96):
    src = tmp_path / "in.tif"
    write_raster(src, smooth_image(4, size, size))
    return src, make_model(tmp_path / "m.satgen", in_bands=4)


def test_the_worker_runs_a_call_with_progress_and_returns_its_result(tmp_path):
    src, model = raster_and_model(tmp_path)
    out = tmp_path / "out.tif"
    feedback = Recorder()
    call = calls.Call("apply_model", model, src, out, TileOptions(tile_size=32, batch_size=2), calls.FEEDBACK)
    result = engine_process.run_in_subprocess(sys.executable, call.request(), feedback)
    assert result["output"] == str(out) and result["width"] == 96  # its result, as plain data
    assert feedback.fractions and feedback.fractions[-1] == 1.0
    in_process = tmp_path / "in_process.tif"
    calls.run(calls.Call("apply_model", model, src, in_process, TileOptions(tile_size=32, batch_size=2),
                         calls.FEEDBACK).request(), Feedback())
    with rasterio.open(out) as a, rasterio.open(in_process) as b, rasterio.open(src) as i:
        assert a.crs == i.crs and a.transform == i.transform
        assert np.array_equal(a.read(), b.read())  # the same engine, the same bytes


def test_engine_errors_come_back_as_the_same_class_and_message(tmp_path):
    src, _model = raster_and_model(tmp_path)
    bad = tmp_path / "bad.satgen"
    bad.write_bytes(b"not a model")
    call = calls.Call("apply_model", bad, src, tmp_path / "out.tif", None, calls.FEEDBACK)
    with pytest.raises(ModelFileError) as raised:
        engine_process.run_in_subprocess(sys.executable, call.request(), Recorder())
    with pytest.raises(ModelFileError) as direct:
        calls.run(call.request(), Feedback())
    assert str(raised.value) == str(direct.value)
    assert not (tmp_path / "out.tif").exists()


def test_cancel_stops_the_worker_and_leaves_nothing(tmp_path):
    src, model = raster_and_model(tmp_path, size=1024)
    out = tmp_path / "out.tif"
    feedback = Recorder(cancel_after=0.05)
    call = calls.Call("apply_model", model, src, out, TileOptions(tile_size=32, batch_size=1), calls.FEEDBACK)
    with pytest.raises(Cancelled):
        engine_process.run_in_subprocess(sys.executable, call.request(), feedback)
    assert feedback.fractions[-1] < 1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif", "m.satgen"]  # no output, no partial file


def test_the_worker_stops_when_its_parent_goes(tmp_path):
    # stdin closing (QGIS gone) cancels the run like the cancel button
    src, model = raster_and_model(tmp_path, size=1024)
    out = tmp_path / "out.tif"
    process = engine_process.start(engine_process.worker_command(sys.executable))
    call = calls.Call("apply_model", model, src, out, TileOptions(tile_size=32, batch_size=1), calls.FEEDBACK)
    process.stdin.write(json.dumps(call.request()) + "\n")
    process.stdin.flush()
    first = json.loads(process.stdout.readline())
    assert {"progress", "info", "status"} & set(first)  # it has begun
    process.stdin.close()
    lines = process.stdout.read().splitlines()
    assert process.wait(timeout=60) == 1
    engine_process.close_pipes(process)
    assert json.loads(lines[-1])["error"]["type"] == "Cancelled"
    assert not out.exists()


def test_stray_output_of_the_engine_goes_to_the_log_not_the_protocol(tmp_path):
    # a library that writes to stdout (here: to file descriptor 1, as C code does) must not break the stream
    code = (f"import os, sys; sys.path.append({str(ROOT)!r}); import engine.environment as e; "
            "real = e.report; e.report = lambda: (os.write(1, b'noise from a library\\n'), real())[1]; "
            "from engine.worker import main; sys.exit(main())")
    done = subprocess.run([sys.executable, "-I", "-c", code], input=json.dumps(calls.Call("environment").request()),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "noise from a library" in done.stderr
    assert [json.loads(line) for line in done.stdout.splitlines()][-1]["result"]["missing"] == []


def test_a_malformed_request_is_refused_with_status_2():
    done = subprocess.run(engine_process.worker_command(sys.executable), input="not json\n", capture_output=True,
                          text=True, timeout=120, env=engine_process.child_environment())
    assert done.returncode == 2 and "malformed request" in done.stdout


def test_an_engine_that_dies_is_reported_with_its_last_words(tmp_path):
    python = tmp_path / "python"
    python.write_text("#!/bin/sh\necho 'Fatal Python error: something broke' >&2\nexit 134\n")
    python.chmod(0o755)
    with pytest.raises(Exception, match="exit status 134.*something broke"):
        engine_process.run_in_subprocess(str(python), calls.Call("environment").request(), Recorder())


def test_engine_modules_the_plugin_imports_need_only_the_standard_library():
    # the plugin builds calls in QGIS's Python, which may lack torch, rasterio, shapely, even numpy
    light = ["engine.calls", "engine.environment", "engine.errors", "engine.progress", "engine.worker",
             "engine.bands", "engine.training.options", "engine.inpainting.config", "engine.synthesis.config",
             "engine.translation.config", "satgen_qgis.engine_process"]
    code = f"""
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'numpy', 'rasterio', 'shapely', 'safetensors', 'qgis'):
            raise ImportError('blocked ' + name)
sys.meta_path.insert(0, Block())
sys.path[:0] = [{str(ROOT)!r}]
for name in {light!r}:
    importlib.import_module(name)
print('ok')
"""
    done = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_one_engine_process_serves_run_after_run_and_is_ended_when_idle_is_off(tmp_path, monkeypatch):
    engine_process.close_idle()
    before = threading.active_count()
    for _ in range(3):  # errors and results alike leave the process ready for the next run
        engine_process.run_in_subprocess(sys.executable, calls.Call("environment").request(), Recorder())
        with pytest.raises(InputError):
            engine_process.run_in_subprocess(sys.executable, calls.Call("translate", str(tmp_path / "none.tif"),
                                                                       str(tmp_path / "o.tif")).request(), Recorder())
    (worker,) = engine_process._IDLE  # one process served all six runs
    assert worker.usable() and threading.active_count() == before + 2  # its two output pumps
    engine_process.close_idle()
    assert worker.process.returncode is not None and threading.active_count() <= before + 2
    monkeypatch.setattr(engine_process, "IDLE_SECONDS", 0)
    engine_process.run_in_subprocess(sys.executable, calls.Call("environment").request(), Recorder())
    assert engine_process._IDLE == []  # ended after its run


def test_a_cancel_sent_with_the_request_is_not_lost(tmp_path):
    # the plugin's cancel can reach the worker right behind its request, before the call has begun
    src, model = raster_and_model(tmp_path, size=1024)
    process = engine_process.start(engine_process.worker_command(sys.executable))
    call = calls.Call("apply_model", model, src, tmp_path / "out.tif", TileOptions(tile_size=32), calls.FEEDBACK)
    process.stdin.write(json.dumps(call.request()) + "\ncancel\n")
    process.stdin.flush()
    answer = None
    while answer is None:
        message = json.loads(process.stdout.readline())
        answer = message.get("error") or message.get("result")
    assert answer["type"] == "Cancelled" and not (tmp_path / "out.tif").exists()
    process.stdin.write(json.dumps(calls.Call("environment").request()) + "\n")  # the next call runs
    process.stdin.flush()
    while "result" not in (message := json.loads(process.stdout.readline())):
        pass
    assert message["result"]["missing"] == []
    process.stdin.close()
    assert process.wait(timeout=60) == 0
    engine_process.close_pipes(process)
