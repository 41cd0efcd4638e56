"""Polygon layers from real and hand-made GeoPackage / GeoJSON files, reprojection and rasterizing."""

import json
import sqlite3
import struct

import numpy as np
import pytest
from rasterio.crs import CRS
from rasterio.transform import from_origin
from shapely import wkb
from shapely.geometry import LineString, Point, Polygon, box

from engine.errors import InputError
from engine.vector import list_layers, rasterize_features, read_features, reproject_geometries
from helpers import SAMPLES

HAVEL = SAMPLES / "havel_osm_landuse.gpkg"
UTM33 = CRS.from_epsg(32633)


def gpkg_blob(geom, srs_id: int, little_endian: bool = True, envelope: bool = True) -> bytes:
    """A GeoPackage geometry blob: "GP", version 0, flags, srs_id, optional xy envelope, WKB."""
    order = "<" if little_endian else ">"
    flags = (1 if little_endian else 0) | ((1 << 1) if envelope else 0)
    head = b"GP" + bytes([0, flags]) + struct.pack(order + "i", srs_id)
    if envelope:
        minx, miny, maxx, maxy = geom.bounds
        head += struct.pack(order + "4d", minx, maxx, miny, maxy)
    return head + wkb.dumps(geom, big_endian=not little_endian)


def write_gpkg(path, layers: dict, epsg: int = 32633, **blob_options):
    """A minimal GeoPackage: {layer name: [(geometry or None, {attributes}), ...]}, written with sqlite3."""
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE gpkg_spatial_ref_sys (srs_name TEXT, srs_id INTEGER PRIMARY KEY, organization TEXT, "
                "organization_coordsys_id INTEGER, definition TEXT, description TEXT)")
    con.execute("INSERT INTO gpkg_spatial_ref_sys VALUES ('crs', ?, 'EPSG', ?, ?, '')",
                (epsg, epsg, CRS.from_epsg(epsg).to_wkt()))
    con.execute("CREATE TABLE gpkg_contents (table_name TEXT PRIMARY KEY, data_type TEXT, identifier TEXT, "
                "description TEXT, last_change TEXT, min_x REAL, min_y REAL, max_x REAL, max_y REAL, srs_id INTEGER)")
    con.execute("CREATE TABLE gpkg_geometry_columns (table_name TEXT, column_name TEXT, geometry_type_name TEXT, "
                "srs_id INTEGER, z INTEGER, m INTEGER)")
    for name, rows in layers.items():
        con.execute("INSERT INTO gpkg_contents VALUES (?, 'features', ?, '', '', 0, 0, 0, 0, ?)", (name, name, epsg))
        con.execute("INSERT INTO gpkg_geometry_columns VALUES (?, 'geom', 'GEOMETRY', ?, 0, 0)", (name, epsg))
        con.execute(f'CREATE TABLE "{name}" (fid INTEGER PRIMARY KEY AUTOINCREMENT, geom BLOB, cls TEXT, code INTEGER)')
        for geom, attrs in rows:
            blob = None if geom is None else gpkg_blob(geom, epsg, **blob_options)
            con.execute(f'INSERT INTO "{name}" (geom, cls, code) VALUES (?, ?, ?)',
                        (blob, attrs.get("cls"), attrs.get("code")))
    con.commit()
    con.close()
    return path


@pytest.mark.skipif(not HAVEL.exists(), reason="sample data missing: run `make data`")
def test_reads_the_real_osm_landuse_geopackage():
    features = read_features(HAVEL, where_field="fclass")
    assert len(features) == 604 and features.crs == UTM33
    assert {g.geom_type for g in features.geometries} == {"MultiPolygon"}
    assert {"forest", "water", "meadow"} <= {a["fclass"] for a in features.attributes}
    assert "fid" not in features.attributes[0] and "geom" not in features.attributes[0]
    left, bottom, right, top = features.bounds()
    assert 328900 < left < right < 346300 and 5813700 < bottom < top < 5822600
    assert list_layers(HAVEL) == [features.layer]


@pytest.mark.parametrize("little_endian,envelope", [(True, True), (False, False)])
def test_reads_handmade_geopackage_blobs(tmp_path, little_endian, envelope):
    square = box(500000, 5799000, 500100, 5799100)
    path = write_gpkg(tmp_path / "m.gpkg", {"clouds": [(square, {"cls": "cloud", "code": 1}),
                                                      (None, {"cls": "nothing"}),
                                                      (Point(500000, 5799000), {"cls": "point"})]},
                      little_endian=little_endian, envelope=envelope)
    features = read_features(path)
    assert len(features) == 1 and features.geometries[0].equals(square)
    assert features.attributes == [{"cls": "cloud", "code": 1}] and features.crs == UTM33


def test_several_layers_need_a_name(tmp_path):
    path = write_gpkg(tmp_path / "two.gpkg", {"a": [(box(0, 0, 1, 1), {})], "b": [(box(0, 0, 2, 2), {"cls": "x"})]})
    with pytest.raises(InputError, match=r"2 layers \(a, b\); name the one"):
        read_features(path)
    assert read_features(path, layer="b").geometries[0].area == 4
    with pytest.raises(InputError, match="no layer 'c'; its layers are: a, b"):
        read_features(path, layer="c")


def test_where_field_keeps_labelled_features_and_names_missing_fields(tmp_path):
    path = write_gpkg(tmp_path / "l.gpkg", {"l": [(box(0, 0, 1, 1), {"cls": "water"}), (box(1, 0, 2, 1), {})]})
    assert [a["cls"] for a in read_features(path, where_field="cls").attributes] == ["water"]
    with pytest.raises(InputError, match="no field 'class'; its fields are: cls, code"):
        read_features(path, where_field="class")


def test_geojson_default_and_named_crs(tmp_path):
    ring = [[13.0, 52.0], [13.01, 52.0], [13.01, 52.01], [13.0, 52.0]]
    polygon = {"type": "Polygon", "coordinates": [ring]}
    feature = {"type": "Feature", "properties": {"cls": "a"}, "geometry": polygon}
    doc = {"type": "FeatureCollection", "features": [feature]}
    (tmp_path / "a.geojson").write_text(json.dumps(doc))
    features = read_features(tmp_path / "a.geojson")
    assert features.crs == CRS.from_epsg(4326) and features.attributes == [{"cls": "a"}]
    doc["crs"] = {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32633"}}
    (tmp_path / "b.json").write_text(json.dumps(doc))
    assert read_features(tmp_path / "b.json").crs == UTM33


def test_clear_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_features(tmp_path / "none.gpkg")
    (tmp_path / "m.shp").write_bytes(b"\0" * 100)
    with pytest.raises(InputError, match="export the layer to GeoPackage or GeoJSON"):
        read_features(tmp_path / "m.shp")
    (tmp_path / "bad.gpkg").write_bytes(b"not sqlite at all" * 10)
    with pytest.raises(InputError, match="cannot read .* as a GeoPackage"):
        read_features(tmp_path / "bad.gpkg")
    lines = write_gpkg(tmp_path / "lines.gpkg", {"roads": [(LineString([(0, 0), (1, 1)]), {})]})
    with pytest.raises(InputError, match=r"no polygon features \(it holds LineString\)"):
        read_features(lines)
    (tmp_path / "x.json").write_text("[1, 2]")
    with pytest.raises(InputError, match="not GeoJSON"):
        read_features(tmp_path / "x.json")


def test_reproject_and_rasterize_land_on_the_right_pixels():
    transform = from_origin(500000, 5800000, 10, 10)
    square = box(500100, 5799700, 500200, 5799800)  # cols 10..19, rows 20..29
    mask = rasterize_features([square], transform, (40, 40))
    rows, cols = np.nonzero(mask)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (20, 29, 10, 19)
    there_and_back = reproject_geometries(reproject_geometries([square], UTM33, "EPSG:4326"), "EPSG:4326", UTM33)
    assert there_and_back[0].symmetric_difference(square).area < 1e-3
    assert not rasterize_features([Polygon()], transform, (4, 4)).any()
    assert rasterize_features([], transform, (3, 5)).shape == (3, 5)
