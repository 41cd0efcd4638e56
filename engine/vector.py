"""Polygon layers from GeoPackage and GeoJSON files, without fiona or GDAL's Python API.

GeoJSON is read with `json`; a GeoPackage with `sqlite3`, decoding its geometry
blobs (a "GP" header, then standard WKB) with shapely. Only polygons are kept:
they serve as cloud masks and as labelled class polygons. Geometries are
reprojected with rasterio (GDAL's PROJ), burnt into a window with
rasterio.features.rasterize.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio.features
import rasterio.warp
from rasterio.crs import CRS
from rasterio.errors import CRSError
from shapely import wkb
from shapely.geometry import GeometryCollection, MultiPolygon, Polygon, mapping, shape

from .errors import InputError

GEOJSON_SUFFIXES = (".geojson", ".json")
GPKG_SUFFIXES = (".gpkg",)
VECTOR_SUFFIXES = GEOJSON_SUFFIXES + GPKG_SUFFIXES
# vector formats met in practice but not read here: they get a message saying how to convert them
OTHER_VECTOR_SUFFIXES = (".shp", ".kml", ".kmz", ".gml", ".tab", ".mif", ".sqlite", ".fgb", ".gdb", ".gpx", ".dxf",
                         ".csv", ".zip")
_EXPORT_HINT = "export the layer to GeoPackage or GeoJSON (in QGIS: right-click the layer > Export > Save Features As)"
# bytes of the envelope after a GeoPackage geometry header, by the flags' envelope code
_ENVELOPE_BYTES = {0: 0, 1: 32, 2: 48, 3: 48, 4: 64}


@dataclass
class Features:
    """Polygon features of one layer: geometries, their attributes, and their CRS (None if unknown)."""

    path: str
    layer: str
    geometries: list = field(default_factory=list)  # shapely Polygon / MultiPolygon
    attributes: list[dict] = field(default_factory=list)
    crs: CRS | None = None

    def __len__(self) -> int:
        return len(self.geometries)

    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) of all geometries, in the layer's CRS."""
        b = np.array([g.bounds for g in self.geometries])
        return float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()), float(b[:, 3].max())

    def reprojected(self, crs) -> list:
        """The geometries in `crs` (unchanged when it is the layer's own CRS)."""
        if self.crs is None:
            raise InputError(f"{self.path} (layer {self.layer}) has no coordinate reference system; "
                             f"set one (in QGIS: Layer Properties > Source) and save the layer again")
        return reproject_geometries(self.geometries, self.crs, crs)


def is_vector_path(path: str | os.PathLike) -> bool:
    """Whether `path` names a vector file by its suffix (one read here, or one that `read_features`
    refuses with a message saying how to convert it)."""
    return Path(path).suffix.lower() in VECTOR_SUFFIXES + OTHER_VECTOR_SUFFIXES


def list_layers(path: str | os.PathLike) -> list[str]:
    """Names of the feature layers of a GeoPackage (a GeoJSON file has one, named after the file)."""
    path = _check_path(path)
    if path.suffix.lower() in GEOJSON_SUFFIXES:
        return [path.stem]
    with _connect(path) as con:
        return _gpkg_layers(con, path)


def read_features(path: str | os.PathLike, layer: str | None = None, where_field: str | None = None) -> Features:
    """Polygon features of a GeoPackage or GeoJSON layer, with their attributes and CRS.

    `layer` picks a GeoPackage layer (required when it has several). With
    `where_field`, the layer must have that attribute and features where it is
    empty (null) are skipped, e.g. the class field of labelled polygons.
    Non-polygon features are skipped; a layer without polygons is an error.
    """
    path = _check_path(path)
    suffix = path.suffix.lower()
    if suffix in GEOJSON_SUFFIXES:
        layer_name, crs, rows = _read_geojson(path)
    else:
        layer_name, crs, rows = _read_gpkg(path, layer)
    where = f"{path} (layer {layer_name})"
    if where_field is not None:
        names = sorted({k for _, attrs in rows for k in attrs})
        if rows and where_field not in names:
            raise InputError(f"{where} has no field {where_field!r}; its fields are: {', '.join(names) or 'none'}")
        rows = [(g, a) for g, a in rows if a.get(where_field) is not None]
    out = Features(path=str(path), layer=layer_name, crs=crs)
    found = set()
    for geom, attrs in rows:
        if geom is None or geom.is_empty:
            continue
        found.add(geom.geom_type)
        poly = _polygonal(geom)
        if poly is not None:
            out.geometries.append(poly)
            out.attributes.append(attrs)
    if not out.geometries:
        kinds = f" (it holds {', '.join(sorted(found))})" if found else " (it is empty)"
        raise InputError(f"{where} has no polygon features{kinds}; masks and class labels need polygons: "
                         f"draw or convert them to polygons")
    return out


def reproject_geometries(geoms: list, src_crs, dst_crs) -> list:
    """Shapely geometries from `src_crs` to `dst_crs`, through rasterio (not pyproj)."""
    src_crs, dst_crs = CRS.from_user_input(src_crs), CRS.from_user_input(dst_crs)
    if src_crs == dst_crs or not geoms:
        return list(geoms)
    moved = rasterio.warp.transform_geom(src_crs, dst_crs, [mapping(g) for g in geoms])
    return [shape(g) for g in moved]


def rasterize_features(geoms: list, window_transform, shape: tuple[int, int], all_touched: bool = False) -> np.ndarray:
    """Boolean (rows, cols) array, True inside any of `geoms` (already in the raster's CRS).

    A pixel is inside when its centre is, or, with `all_touched`, when a
    geometry touches it at all.
    """
    rows, cols = shape
    geoms = [g for g in geoms if g is not None and not g.is_empty]
    if not geoms or rows == 0 or cols == 0:
        return np.zeros(shape, bool)
    burnt = rasterio.features.rasterize(((g, 1) for g in geoms), out_shape=(rows, cols), transform=window_transform,
                                        fill=0, all_touched=all_touched, dtype="uint8")
    return burnt.astype(bool)


# --- reading -----------------------------------------------------------------------------------------------------

def _check_path(path) -> Path:
    path = Path(path)
    if path.suffix.lower() not in VECTOR_SUFFIXES:
        raise InputError(f"cannot read {path}: only GeoPackage (.gpkg) and GeoJSON (.geojson, .json) layers are "
                         f"supported; {_EXPORT_HINT}")
    if not path.exists():
        raise InputError(f"vector file {path} does not exist; check the path")
    return path


def _polygonal(geom):
    """The polygon parts of a geometry, or None when it has none."""
    if isinstance(geom, (Polygon, MultiPolygon)):
        return geom
    if isinstance(geom, GeometryCollection):
        parts = [g for g in geom.geoms if isinstance(g, (Polygon, MultiPolygon)) and not g.is_empty]
        polys = [p for g in parts for p in (g.geoms if isinstance(g, MultiPolygon) else [g])]
        return MultiPolygon(polys) if polys else None
    return None


def _geojson_crs(doc: dict, path: Path) -> CRS:
    """The (pre-RFC 7946) "crs" member, or WGS 84 longitude/latitude, the standard's only CRS."""
    member = doc.get("crs")
    if not member:
        return CRS.from_epsg(4326)
    name = str((member.get("properties") or {}).get("name", ""))
    if re.search(r"CRS:?84$", name, re.I):
        return CRS.from_epsg(4326)
    epsg = re.search(r"EPSG:+(?:[\d.]*:)?(\d+)$", name, re.I)
    try:
        return CRS.from_epsg(int(epsg.group(1))) if epsg else CRS.from_user_input(name)
    except CRSError:
        raise InputError(f"{path}: unknown coordinate reference system {name!r} in its \"crs\" member; "
                         f"save it again as GeoJSON in WGS 84 (EPSG:4326)") from None


def _read_geojson(path: Path):
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {path} as GeoJSON ({exc}); {_EXPORT_HINT}") from None
    if not isinstance(doc, dict) or "type" not in doc:
        raise InputError(f"{path} is JSON but not GeoJSON (no \"type\" member); {_EXPORT_HINT}")
    if doc["type"] == "FeatureCollection":
        features = doc.get("features") or []
    elif doc["type"] == "Feature":
        features = [doc]
    else:
        features = [{"type": "Feature", "geometry": doc, "properties": {}}]
    rows = []
    for i, feature in enumerate(features):
        geometry = feature.get("geometry")
        try:
            geom = shape(geometry) if geometry else None
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise InputError(f"{path}: feature {i} has an invalid geometry ({exc})") from None
        rows.append((geom, dict(feature.get("properties") or {})))
    return path.stem, _geojson_crs(doc, path), rows


def _connect(path: Path) -> sqlite3.Connection:
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        con.execute("SELECT 1 FROM sqlite_master LIMIT 1")
        return con
    except sqlite3.DatabaseError as exc:
        raise InputError(f"cannot read {path} as a GeoPackage ({exc}); {_EXPORT_HINT}") from None


def _gpkg_layers(con: sqlite3.Connection, path: Path) -> list[str]:
    try:
        return [r[0] for r in con.execute(
            "SELECT table_name FROM gpkg_contents WHERE data_type = 'features' ORDER BY table_name")]
    except sqlite3.DatabaseError:
        raise InputError(f"{path} is an SQLite file but not a GeoPackage (no gpkg_contents table); "
                         f"{_EXPORT_HINT}") from None


def _gpkg_crs(con: sqlite3.Connection, srs_id: int, path: Path) -> CRS | None:
    row = con.execute("SELECT organization, organization_coordsys_id, definition FROM gpkg_spatial_ref_sys "
                      "WHERE srs_id = ?", (srs_id,)).fetchone()
    if row is None or srs_id in (-1, 0) and (row[2] or "").strip().lower() in ("", "undefined"):
        return None
    organization, code, definition = row
    try:
        if (organization or "").upper() == "EPSG" and code and code > 0:
            return CRS.from_epsg(code)
        return CRS.from_wkt(definition)
    except CRSError:
        raise InputError(f"{path}: cannot understand its coordinate reference system (srs_id {srs_id}); "
                         f"save the layer again with an EPSG CRS") from None


def _read_gpkg(path: Path, layer: str | None):
    con = _connect(path)
    try:
        layers = _gpkg_layers(con, path)
        if not layers:
            raise InputError(f"{path} has no vector layers; {_EXPORT_HINT}")
        if layer is None:
            if len(layers) > 1:
                raise InputError(f"{path} has {len(layers)} layers ({', '.join(layers)}); name the one to use")
            layer = layers[0]
        elif layer not in layers:
            raise InputError(f"{path} has no layer {layer!r}; its layers are: {', '.join(layers)}")
        geom_col, srs_id = con.execute("SELECT column_name, srs_id FROM gpkg_geometry_columns WHERE table_name = ?",
                                       (layer,)).fetchone()
        crs = _gpkg_crs(con, srs_id, path)
        quoted = layer.replace(chr(34), chr(34) * 2)  # a name can't be a query parameter
        cursor = con.execute(f'SELECT * FROM "{quoted}"')  # nosec B608  # a layer the file lists, quoted
        names = [d[0] for d in cursor.description]
        g = names.index(geom_col)
        pk = _primary_key(con, layer)
        rows = []
        for record in cursor:
            attrs = {n: v for n, v in zip(names, record, strict=True) if n not in (geom_col, pk)}
            rows.append((_decode_gpkg_geometry(record[g], path, layer), attrs))
        return layer, crs, rows
    finally:
        con.close()


def _primary_key(con: sqlite3.Connection, table: str) -> str | None:
    for _, name, _, _, _, pk in con.execute(f'PRAGMA table_info("{table.replace(chr(34), chr(34) * 2)}")'):
        if pk:
            return name
    return None


def _decode_gpkg_geometry(blob: bytes | None, path: Path, layer: str):
    """A shapely geometry from a GeoPackage geometry blob (None for null or empty ones)."""
    if blob is None:
        return None
    blob = bytes(blob)
    if len(blob) < 8 or blob[:2] != b"GP":
        raise InputError(f"{path} (layer {layer}) holds geometries that are not GeoPackage blobs; {_EXPORT_HINT}")
    flags = blob[3]
    if flags & 0b100000:
        raise InputError(f"{path} (layer {layer}) uses extended (non-standard) geometry types; {_EXPORT_HINT}")
    if flags & 0b10000:
        return None  # empty geometry
    envelope = _ENVELOPE_BYTES.get((flags >> 1) & 0b111)
    if envelope is None:
        raise InputError(f"{path} (layer {layer}) holds a malformed geometry blob; {_EXPORT_HINT}")
    try:
        return wkb.loads(blob[8 + envelope:])
    except Exception as exc:  # shapely raises its own WKBReadingError / GEOSException depending on version
        raise InputError(f"{path} (layer {layer}) holds a geometry that cannot be decoded ({exc}); "
                         f"{_EXPORT_HINT}") from None
