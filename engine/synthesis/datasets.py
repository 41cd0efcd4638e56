"""Labelled patch data sets for class-conditional synthesis.

Two layouts, one result (`PatchSet`: patches, labels, class names, a held-out flag):

- class folders, as EuroSAT / UC Merced / AID ship them::

      root/
        Forest/  img1.jpg img2.tif ...
        River/   ...

  any size (centre-cropped to a square, then resized to the patch size), any
  band count as long as all images agree. Unreadable files are skipped and
  listed. Held-out images: per class, the share of files whose seeded hash of
  the file name is smallest (`held_out_by_name`).
- a raster plus a class raster (integer codes) or a polygon layer (GPKG or
  GeoJSON, class in a field): windows on a half-patch grid whose dominant class
  covers at least `threshold` of the window. The scene is cut into square
  blocks (engine.splits.BlockSplit); windows crossing a block edge are
  dropped, so no training window touches a held-out one.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning
from rasterio.warp import reproject

from ..card import MAX_BANDS, MAX_CLASSES
from ..errors import InputError
from ..raster import GDAL_ENV, BlockReader, open_raster
from ..scaling import BandScaling, fit_percentiles
from ..splits import BlockSplit

MAX_IMAGE_SIDE = 1024  # px: class-folder images larger than this are read decimated to it
MAX_IMAGE_BYTES = 256 * 2 ** 20  # one image as read: many-band images are read decimated further
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".jp2", ".gif")
VECTOR_SUFFIXES = (".gpkg", ".geojson", ".json", ".shp")


@dataclass
class PatchSet:
    x: np.ndarray  # (N, C, P, P) float32 raster values
    labels: np.ndarray  # (N,) int64 index into classes
    classes: list[str]
    band_names: list[str]
    dtype: str  # dtype of the source values (what synthesized GeoTIFFs are written in)
    held_out: np.ndarray  # (N,) bool
    sources: list[str]  # per patch: file, or "row,col" of the window's top-left pixel
    skipped: list[str] = field(default_factory=list)  # "file: reason"
    description: str = ""

    @property
    def patch_size(self) -> int:
        return int(self.x.shape[-1])

    def part(self, which: str) -> tuple[np.ndarray, np.ndarray]:
        """(x, labels) of the 'train' or 'val' (held-out) patches."""
        keep = self.held_out if which == "val" else ~self.held_out
        return self.x[keep], self.labels[keep]

    def counts(self, which: str = "train") -> dict[str, int]:
        _, labels = self.part(which)
        return {c: int((labels == i).sum()) for i, c in enumerate(self.classes)}

    def fit_scaling(self, lower: float = 0.5, upper: float = 99.5, max_samples: int = 400_000,
                    seed: int = 0, stretch: str = "percentile") -> BandScaling:
        """Per-band stretch on the training patches (model space [-1, 1]): the lower/upper percentiles, or with
        stretch "minmax" their minimum and maximum (of every value, not a sample)."""
        x, _ = self.part("train")
        if stretch == "minmax":
            low, high = x.min(axis=(0, 2, 3)).astype(np.float64), x.max(axis=(0, 2, 3)).astype(np.float64)
            return BandScaling(tuple(low.tolist()), tuple(np.maximum(high, low + 1e-6).tolist()))
        flat = x.transpose(1, 0, 2, 3).reshape(x.shape[1], -1)
        if flat.shape[1] > max_samples:
            idx = np.random.default_rng(seed).choice(flat.shape[1], max_samples, replace=False)
            flat = flat[:, idx]
        return fit_percentiles(flat.astype(np.float64), lower, upper)


def _summary(patches: PatchSet) -> str:
    train, val = patches.counts("train"), patches.counts("val")
    return ", ".join(f"{c} {train[c]}+{val[c]}" for c in patches.classes)


def _drop_empty(patches: PatchSet, warn, min_patches: int = 1) -> PatchSet:
    """Classes with fewer than `min_patches` training patches cannot be learned: drop them, say so.
    InputError when more classes or bands remain than a model card holds (found now, not after training)."""
    train = patches.counts("train")
    empty = [c for c, n in train.items() if n < max(1, min_patches)]
    if len(patches.classes) - len(empty) > MAX_CLASSES:
        raise InputError(f"the data set has {len(patches.classes) - len(empty)} classes; a synthesis model learns at "
                         f"most {MAX_CLASSES} (merge classes, or give fewer class folders or codes)")
    if len(patches.band_names) > MAX_BANDS:
        raise InputError(f"the data set has {len(patches.band_names)} bands; a synthesis model takes at most "
                         f"{MAX_BANDS} (select bands)")
    if not empty:
        return patches
    warn(f"class(es) {', '.join(f'{c} ({train[c]})' for c in empty)} have fewer than {max(1, min_patches)} "
         f"training patch(es) and are left out")
    keep_classes = [c for c in patches.classes if c not in empty]
    if not keep_classes:
        raise InputError("no class has a training patch; give more labelled data (or a lower threshold)")
    remap = np.array([keep_classes.index(c) if c in keep_classes else -1 for c in patches.classes])
    new = remap[patches.labels]
    keep = new >= 0
    return PatchSet(patches.x[keep], new[keep], keep_classes, patches.band_names, patches.dtype,
                    patches.held_out[keep], [s for s, k in zip(patches.sources, keep, strict=True) if k],
                    patches.skipped, patches.description)


# --------------------------------------------------------------------------- class folders

def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """(C, H, W) -> (C, size, size) float32: centre crop to a square, then area/bilinear resize."""
    c, h, w = image.shape
    s = min(h, w)
    r0, c0 = (h - s) // 2, (w - s) // 2
    image = image[:, r0:r0 + s, c0:c0 + s].astype(np.float32)
    if s == size:
        return np.ascontiguousarray(image)
    t = torch.from_numpy(np.ascontiguousarray(image))[None]
    out = torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear", align_corners=False,
                                          antialias=s > size)
    return out[0].numpy()


def shown(path: str | os.PathLike) -> str:
    """A file name as messages show it: printable even when the name is not valid UTF-8."""
    return os.fsencode(path).decode("utf-8", "replace")


def _read_image(path: Path) -> tuple[np.ndarray, str, list[str]]:
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:  # a name that is not UTF-8 (POSIX only), which GDAL cannot be given: a link's can
        with tempfile.TemporaryDirectory(prefix="satgen-") as tmp:
            link = Path(tmp) / f"image{shown(path.suffix)}"
            os.symlink(os.fsencode(path.absolute()), link)
            return _read_image(link)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.Env(**GDAL_ENV), rasterio.open(path) as src:
            # a file a few bytes long may declare tens of thousands of bands (GDAL then reads for hours)
            if src.count > MAX_BANDS:
                raise InputError(f"it has {src.count} bands; images of a data set may have at most {MAX_BANDS}")
            if any(np.dtype(dt).kind == "c" for dt in src.dtypes):
                raise InputError("it holds complex values; images of a data set hold real numbers")
            interp = [ci.name for ci in src.colorinterp]
            colours = interp if sorted(interp) == ["blue", "green", "red"] else [""] * src.count
            names = [(d or "").strip() or colours[i] for i, d in enumerate(src.descriptions)]
            # a patch needs no more: larger images (or a file that claims to be huge) are read decimated,
            # so memory stays bounded by what the file declares (and by MAX_IMAGE_BYTES for many bands)
            itemsize = max(np.dtype(dt).itemsize for dt in src.dtypes)
            limit = min(MAX_IMAGE_SIDE, max(1, int(math.sqrt(MAX_IMAGE_BYTES / (src.count * itemsize)))))
            side = max(src.width, src.height)
            if side > limit:
                scale = limit / side
                shape = (src.count, max(1, round(src.height * scale)), max(1, round(src.width * scale)))
                resampling = Resampling.nearest if "palette" in interp else Resampling.average
                data = src.read(out_shape=shape, resampling=resampling)
            else:
                data = src.read()
            if src.count in (2, 4) and interp[-1] == "alpha":  # RGBA / grey+alpha PNGs: drop alpha
                data, names = data[:-1], names[:-1]
            elif src.count == 1 and interp[0] == "palette":
                cmap = src.colormap(1)
                lut = np.array([cmap.get(i, (0, 0, 0, 0))[:3] for i in range(256)], np.uint8)
                data, names = lut[data[0]].transpose(2, 0, 1), ["red", "green", "blue"]
            if data.dtype.kind == "f" and not np.isfinite(data).all():
                raise InputError("it holds NaN or infinite values (nodata?); images of a data set must be complete")
            return data, str(data.dtype), names


def physical_memory() -> int | None:
    """Bytes of physical memory, where the system says (POSIX); else None."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check_patch_memory(count: int, bands: int, patch_size: int, what: str, fix: str) -> None:
    """InputError before reading when `count` patches of `bands` x `patch_size`^2 float32 would take more than
    half the physical memory (8 GiB where the system does not say), instead of the system killing the run
    halfway through."""
    memory = physical_memory()
    budget, whose = (memory // 2, "half of this machine's memory") if memory else (8 * 2 ** 30, "the limit where "
                                                                                   "the memory size is unknown")
    need = count * bands * patch_size * patch_size * 4
    if need > budget:
        fits = max(1, budget // (bands * patch_size * patch_size * 4))
        raise InputError(f"{what}: {count} images of {bands} band(s) at {patch_size} px would take "
                         f"{_size(need)} in memory, more than the {_size(budget)} allowed ({whose}); give at most "
                         f"about {fits} images ({fix}), or a smaller patch size")


def _size(n: int) -> str:
    return f"{n / 2 ** 30:.1f} GiB" if n >= 2 ** 30 else f"{n / 2 ** 20:.1f} MiB"


def _read_patches(files: list[Path], patch_size: int, skipped: list[str], total: int, what: str, fix: str):
    """(file, patch, dtype, band names) of each readable file, resized to `patch_size`; unreadable files
    are listed in `skipped`. The memory `total` files would take is checked at the first one read."""
    checked = False
    for f in files:
        try:
            data, dtype, names = _read_image(f)
        except Exception as exc:  # any file GDAL cannot decode is skipped, not fatal
            reason = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
            skipped.append(f"{shown(f)}: {shown(reason)}")
            continue
        if not checked:
            check_patch_memory(total, data.shape[0], patch_size, what, fix)
            checked = True
        yield f, resize_square(data, patch_size), dtype, names


def load_class_folders(root: str | os.PathLike, patch_size: int = 64, val_fraction: float = 0.2, seed: int = 0,
                       max_per_class: int | None = None, warn=print) -> PatchSet:
    """Patches from `root/<class>/<image>` folders (see the module docstring)."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"data set folder {shown(root)} does not exist; give a folder with one sub-folder per "
                         f"class")
    _check_split(patch_size, val_fraction, allow_none=True)
    if max_per_class is not None and max_per_class < 0:
        raise InputError(f"the most images per class must be 1 or more (0: all), got {max_per_class}")
    folders = sorted(p for p in _listed(root) if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise InputError(f"{shown(root)} has no class sub-folders; lay the images out as "
                         f"{shown(root)}/<class name>/<image>")
    images: list[np.ndarray] = []
    labels: list[int] = []
    sources: list[str] = []
    skipped: list[str] = []
    dtypes: dict[str, int] = {}
    band_names: list[str] | None = None
    classes: list[str] = []
    counts: dict[str, int] = {}
    rng = np.random.default_rng(seed)
    listed = []
    for folder in folders:
        files = sorted(p for p in _listed(folder) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if max_per_class and len(files) > max_per_class:
            # numpy's stubs admit no sequence of objects (Paths) as an array-like; choice takes any
            files = sorted(rng.choice(files, max_per_class, replace=False).tolist())  # type: ignore[arg-type]
        listed.append((folder, files))
    total = sum(len(files) for _, files in listed)
    what, fix = f"class folders {shown(root)}", "on the command line --max-per-class caps each class"
    for folder, files in listed:
        index = len(classes)
        count = 0
        for f, patch, dtype, names in _read_patches(files, patch_size, skipped, total, what, fix):
            if images and patch.shape[0] != images[0].shape[0]:
                raise InputError(
                    f"images of mixed band counts: {shown(sources[0])} has {images[0].shape[0]} band(s), "
                    f"{shown(f)} has {patch.shape[0]}; a data set needs one band layout (convert or remove the "
                    f"odd images)")
            images.append(patch)
            labels.append(index)
            sources.append(str(f))
            dtypes[dtype] = dtypes.get(dtype, 0) + 1
            band_names = band_names or names
            count += 1
        name = shown(folder.name)  # the class name: printable, in messages and in the model card
        if count == 0:
            warn(f"class folder {name} holds no readable image and is left out")
            continue
        classes.append(name)
        counts[name] = count
    for line in skipped:
        warn(f"skipped unreadable file {line}")
    if not classes:
        raise InputError(f"no readable image in the class folders of {shown(root)} (images: "
                         f"{', '.join(IMAGE_SUFFIXES)})")
    labels_arr = np.asarray(labels, np.int64)
    held_out = held_out_by_name(sources, labels_arr, val_fraction, seed)
    dtype = next(iter(dtypes)) if len(dtypes) == 1 else "float32"
    names = band_names if band_names and all(band_names) else [f"B{i + 1}" for i in range(images[0].shape[0])]
    patches = PatchSet(np.stack(images), labels_arr, classes, names, dtype, held_out, sources, skipped,
                       f"class folders {root.name}: {len(labels_arr)} images")
    return _drop_empty(patches, warn)


def load_unlabelled(root: str | os.PathLike, patch_size: int, bands: int, warn=print) -> np.ndarray:
    """(N, bands, P, P) float32 patches of every image under `root` (any folder layout), centre-cropped and resized
    as class-folder images are; unreadable files are skipped and listed, another band count is an error."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"the folder of unlabelled images {shown(root)} does not exist")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    images: list[np.ndarray] = []
    skipped: list[str] = []
    what, fix = f"unlabelled images {shown(root)}", "a folder holding a subset of them"
    for f, patch, _, _ in _read_patches(files, patch_size, skipped, len(files), what, fix):
        if patch.shape[0] != bands:
            raise InputError(f"{shown(f)} has {patch.shape[0]} band(s), the labelled images {bands}; unlabelled "
                             f"images need the same band layout")
        images.append(patch)
    for line in skipped:
        warn(f"skipped unreadable file {line}")
    if not images:
        raise InputError(f"no readable image under {shown(root)} (images: {', '.join(IMAGE_SUFFIXES)})")
    return np.stack(images)


def name_key(name: str, seed: int) -> bytes:
    """The split's key of a file: SHA-256 of "<seed>:<file name>" (the name alone, not its folder)."""
    return hashlib.sha256(f"{seed}:{name}".encode("utf-8", "surrogateescape")).digest()


def held_out_by_name(sources: list[str], labels: np.ndarray, val_fraction: float, seed: int) -> np.ndarray:
    """Per class, the round(val_fraction x n) files with the smallest `name_key` are held out (at least one
    when a class has two files, never all; none with val_fraction 0). Depends on the file names only: not on
    listing order, on other classes or on random state, so adding files to a class moves no other file across
    the split."""
    held_out = np.zeros(len(labels), bool)
    keys = [name_key(os.path.basename(s), seed) for s in sources]
    for i in np.unique(labels):
        idx = np.flatnonzero(labels == i)
        some = len(idx) > 1 and val_fraction > 0
        n_val = min(max(int(round(val_fraction * len(idx))), 1) if some else 0, len(idx) - 1)
        held_out[sorted(idx, key=lambda j: keys[j])[:n_val]] = True
    return held_out


def _listed(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except OSError as exc:
        raise InputError(f"cannot list the folder {shown(folder)} ({exc.strerror or exc}); check it and its "
                         f"permissions") from None


def _check_split(patch_size: int, val_fraction: float, allow_none: bool = False) -> None:
    """allow_none: a validation fraction of 0 holds nothing out (class folders, e.g. a few labels per class)."""
    if not 8 <= patch_size <= 512:
        raise InputError(f"patch size must be between 8 and 512 px, got {patch_size}")
    if not (0.0 < val_fraction < 1.0 or (allow_none and val_fraction == 0)):
        span = "from 0 (hold nothing out) up to 1 (exclusive)" if allow_none else "between 0 and 1 (exclusive)"
        raise InputError(f"validation fraction must be {span}, got {val_fraction}")


# --------------------------------------------------------------------------- raster + labels

def read_polygons(path: str | os.PathLike, field_name: str, layer: str | None = None):
    """[(shapely geometry, class value as str)], CRS (rasterio CRS or None) of a polygon layer."""
    try:  # the shared vector reader, where this SatGen has it
        from .. import vector

        feats = vector.read_features(path, layer, where_field=field_name)
        return _from_shared_reader(feats, field_name, path)
    except ImportError:
        pass
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".gpkg":
        return _read_gpkg(path, field_name, layer)
    if suffix in (".geojson", ".json"):
        return _read_geojson(path, field_name)
    raise InputError(f"cannot read {path.name} as polygons; give a GeoPackage (.gpkg) or GeoJSON layer, "
                     f"or a class raster")


def _from_shared_reader(feats, field_name: str, path):
    rows = []
    for geom, props in zip(feats.geometries, feats.attributes, strict=True):
        if field_name not in props:
            raise InputError(f"{Path(path).name} has no field {field_name!r}; its fields: {', '.join(props)}")
        if props[field_name] is not None and geom is not None:
            rows.append((geom, str(props[field_name])))
    return rows, feats.crs


def _ident(name: str) -> str:
    """A table or column name quoted for SQLite (names can't be query parameters)."""
    return '"' + name.replace('"', '""') + '"'


def _read_gpkg(path: Path, field_name: str, layer: str | None):
    from rasterio.crs import CRS
    from shapely import wkb

    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        tables = con.execute("SELECT table_name, column_name, srs_id FROM gpkg_geometry_columns").fetchall()
    except sqlite3.Error as exc:
        raise InputError(f"cannot read {path.name} as a GeoPackage ({exc})") from None
    if layer:
        tables = [t for t in tables if t[0] == layer]
    if not tables:
        raise InputError(f"{path.name} has no polygon layer{f' named {layer!r}' if layer else ''}")
    table, column, srs = tables[0]
    fields = [r[1] for r in con.execute(f"PRAGMA table_info({_ident(table)})")]
    if field_name not in fields:
        raise InputError(f"layer {table} has no field {field_name!r}; its fields: {', '.join(fields)}")
    org = con.execute("SELECT organization, organization_coordsys_id FROM gpkg_spatial_ref_sys WHERE srs_id=?",
                      (srs,)).fetchone()
    crs = CRS.from_epsg(org[1]) if org and org[0].upper() == "EPSG" and org[1] > 0 else None
    rows = []
    query = f"SELECT {_ident(column)}, {_ident(field_name)} FROM {_ident(table)}"  # nosec B608  # quoted names
    for blob, value in con.execute(query):
        if blob is None or value is None:
            continue
        flags = blob[3]
        envelope = {0: 0, 1: 32, 2: 48, 3: 48, 4: 64}.get((flags >> 1) & 7, 0)
        rows.append((wkb.loads(bytes(blob[8 + envelope:])), str(value)))
    con.close()
    return rows, crs


def _read_geojson(path: Path, field_name: str):
    from rasterio.crs import CRS
    from shapely.geometry import shape

    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {path.name} as GeoJSON ({exc})") from None
    crs_name = ((data.get("crs") or {}).get("properties") or {}).get("name")
    rows = []
    for f in data.get("features", []):
        props = f.get("properties") or {}
        if field_name not in props:
            raise InputError(f"{path.name} has no field {field_name!r}; its fields: {', '.join(props)}")
        if f.get("geometry") and props[field_name] is not None:
            rows.append((shape(f["geometry"]), str(props[field_name])))
    return rows, CRS.from_user_input(crs_name) if crs_name else CRS.from_epsg(4326)


def _class_grid_from_raster(path, src, class_names: dict[str, str] | None):
    """(H, W) int32 class index on src's grid (-1: none), class names."""
    with open_raster(path) as lab:
        codes = np.full((src.height, src.width), np.nan, np.float64)
        reproject(rasterio.band(lab, 1), codes, dst_transform=src.transform, dst_crs=src.crs,
                  dst_nodata=np.nan, resampling=Resampling.nearest)
        if lab.nodata is not None:
            codes[codes == lab.nodata] = np.nan
    found = np.unique(codes[np.isfinite(codes)])
    if class_names:
        values = [v for v in found if _code(v) in class_names]
        names = [class_names[_code(v)] for v in values]
    else:
        values, names = list(found), [_code(v) for v in found]
    if not values:
        raise InputError(f"{Path(path).name} holds no class code over the raster"
                         + (f" among {', '.join(class_names)}" if class_names else ""))
    grid = np.full(codes.shape, -1, np.int32)
    for i, v in enumerate(values):
        grid[codes == v] = i
    return grid, names


def _code(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _class_grid_from_polygons(path, field_name, layer, src):
    from rasterio.features import rasterize
    from rasterio.warp import transform_geom
    from shapely.geometry import mapping

    if not field_name:
        raise InputError("a polygon label layer needs FIELD / --field: the attribute that holds the class")
    rows, crs = read_polygons(path, field_name, layer)
    if not rows:
        raise InputError(f"{Path(path).name} holds no polygon with a value in {field_name!r}")
    names = sorted({v for _, v in rows})
    shapes = []
    for geom, value in rows:
        g = mapping(geom)
        if crs is not None and src.crs is not None and crs != src.crs:
            g = transform_geom(crs, src.crs, g)
        shapes.append((g, names.index(value)))
    grid = rasterize(shapes, out_shape=(src.height, src.width), transform=src.transform, fill=-1, dtype="int32")
    return grid, names


def load_raster_patches(raster: str | os.PathLike, labels: str | os.PathLike, field_name: str | None = None,
                        patch_size: int = 32, threshold: float = 0.7, block_size: int | None = None,
                        val_fraction: float = 0.25, seed: int = 0, bands: list[int] | None = None,
                        class_names: dict[str, str] | None = None, layer: str | None = None,
                        stride: int | None = None, min_patches: int = 1, warn=print) -> PatchSet:
    """Labelled windows of `raster` from a class raster or polygon layer (module docstring)."""
    _check_split(patch_size, val_fraction)
    if not 0.0 < threshold <= 1.0:
        raise InputError(f"dominant-class threshold must be in (0, 1], got {threshold}")
    stride = stride or max(1, patch_size // 2)
    block_size = block_size or 4 * patch_size
    if block_size < patch_size:
        raise InputError(f"block size {block_size} must be at least the patch size {patch_size}")
    with rasterio.Env(**GDAL_ENV), open_raster(raster) as src:
        band_idx = bands or list(range(1, src.count + 1))
        bad = [b for b in band_idx if not 1 <= b <= src.count]
        if bad:
            raise InputError(f"band(s) {bad} do not exist: {Path(raster).name} has bands 1..{src.count}")
        data, valid = BlockReader(src, band_idx).read(0, src.height, 0, src.width)
        names = [(src.descriptions[b - 1] or "").strip() or f"B{b}" for b in band_idx]
        dtype = src.dtypes[band_idx[0] - 1]
        if Path(labels).suffix.lower() in VECTOR_SUFFIXES:
            grid, classes = _class_grid_from_polygons(labels, field_name, layer, src)
        else:
            grid, classes = _class_grid_from_raster(labels, src, class_names)
    valid = np.ones(grid.shape, bool) if valid is None else valid
    h, w = grid.shape
    if h < patch_size or w < patch_size:
        raise InputError(f"{Path(raster).name} is {w} x {h} px, smaller than one {patch_size} px patch")
    labelled = (grid >= 0) & valid
    split = BlockSplit(h, w, block_size, val_fraction, seed, valid=labelled, min_block_valid=0.02)
    k = len(classes)
    xs, ys, held, sources = [], [], [], []
    for which, blocks in (("train", split.train_blocks), ("val", split.val_blocks)):
        for r0b, c0b, r1b, c1b in blocks:
            for r in range(r0b, r1b - patch_size + 1, stride):
                for c in range(c0b, c1b - patch_size + 1, stride):
                    if not valid[r:r + patch_size, c:c + patch_size].all():
                        continue
                    window = grid[r:r + patch_size, c:c + patch_size]
                    hist = np.bincount(window[window >= 0], minlength=k)
                    top = int(hist.argmax())
                    if hist[top] < threshold * patch_size * patch_size:
                        continue
                    xs.append(data[:, r:r + patch_size, c:c + patch_size].astype(np.float32))
                    ys.append(top)
                    held.append(which == "val")
                    sources.append(f"{r},{c}")
    if not xs:
        raise InputError(f"no {patch_size} px window of {Path(raster).name} has one class covering "
                         f"{threshold:.0%} of it; lower the threshold or the patch size")
    patches = PatchSet(np.stack(xs), np.asarray(ys, np.int64), classes, names, dtype, np.asarray(held),
                       sources, [], f"{Path(raster).name} + {Path(labels).name}: {patch_size} px windows, "
                       f"dominant class >= {threshold:.0%}, block split {block_size} px")
    return _drop_empty(patches, warn, min_patches)


def describe(patches: PatchSet) -> str:
    return f"{patches.description}; per class train+held-out: {_summary(patches)}"


def patches_to_model(scaling: BandScaling, x: np.ndarray) -> np.ndarray:
    """(N, C, P, P) band values -> model space [-1, 1] (the scaling works band-first)."""
    return np.moveaxis(scaling.to_model(np.moveaxis(x, 1, 0), clip=1.0), 0, 1)


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random one of the 8 flips / quarter turns per patch."""
    ks = torch.randint(0, 8, (x.shape[0],), generator=generator)
    out = x.clone()
    for k in range(1, 8):
        sel = ks == k
        if sel.any():
            y = torch.rot90(x[sel], k % 4, dims=(-2, -1))
            out[sel] = y.flip(-1) if k >= 4 else y
    return out


def balanced_indices(labels: np.ndarray, n: int, generator: torch.Generator) -> torch.Tensor:
    """n indexes with every class equally likely (rare classes are seen as often as common ones)."""
    counts = np.bincount(labels)
    weights = torch.from_numpy(1.0 / counts[labels]).double()
    return torch.multinomial(weights, n, replacement=True, generator=generator)
