"""Writing detections: GeoJSON that GDAL/OGR reads back, GeoPackage and FlatGeobuf in the native CRS, atomic files."""

from __future__ import annotations

import json
import sys

import numpy as np
import pyogrio
import pyogrio.raw
import pyproj
import pytest
from rasterio.transform import Affine

from raster_factory import write_geotiff
from smgeo_cli.errors import InputFileError, UsageError
from smgeo_cli.geo.output import Detection, geojson_text, make_feature, property_columns, write_features
from smgeo_cli.geo.raster import open_reference

BOX = (20.0, 10.0, 44.5, 30.0)
PROPERTIES = [
    "score", "rank", "query", "click_x", "click_y", "bbox_px", "ref",
    "ref_crs", "center_lon", "center_lat", "area_m2", "model",
]  # fmt: skip


@pytest.fixture
def feature(tmp_path):
    path = write_geotiff(tmp_path / "ref.tif", np.full((3, 60, 80), 90, dtype=np.uint8))
    with open_reference(path) as raster:
        detection = Detection(BOX, 0.875, 1)
        return make_feature(
            raster, detection, query="DJI_0001.JPG", click=(412.0, 230.0), model="smgeo-t", extra={"tile": [3, 4]}
        )


def _bounds(ring: np.ndarray) -> tuple[float, float, float, float]:
    return (*ring.min(axis=0), *ring.max(axis=0))


def test_geojson_loads_in_ogr_with_one_feature_in_epsg4326(tmp_path, feature):
    out = tmp_path / "hit.geojson"
    write_features(out, [feature])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hit.geojson", "ref.tif"]
    info = pyogrio.read_info(out, force_total_bounds=True)
    assert info["features"] == 1
    assert info["crs"] == "EPSG:4326"
    assert info["geometry_type"] == "Polygon"
    np.testing.assert_allclose(info["total_bounds"], _bounds(feature.ring_lonlat), atol=0.6e-7)
    _, _, geometry, fields = pyogrio.raw.read(out)
    assert len(geometry) == 1
    read = dict(zip(pyogrio.read_info(out)["fields"], (column[0] for column in fields)))
    assert read["score"] == 0.875 and read["rank"] == 1 and read["query"] == "DJI_0001.JPG"
    assert read["ref_crs"] == "EPSG:32633" and read["model"] == "smgeo-t"


def test_geojson_text_has_the_standard_properties_then_extras(tmp_path, feature):
    properties = json.loads(geojson_text([feature]))["features"][0]["properties"]
    assert list(properties) == [*PROPERTIES, "tile"]
    assert properties["bbox_px"] == list(BOX)
    assert properties["click_x"] == 412.0 and properties["click_y"] == 230.0
    assert properties["ref"] == str(tmp_path / "ref.tif")
    assert properties["tile"] == [3, 4]
    write_features(tmp_path / "hit.json", [feature])
    assert (tmp_path / "hit.json").read_text() == geojson_text([feature])


@pytest.mark.parametrize("suffix, driver", [(".gpkg", "GPKG"), (".fgb", "FlatGeobuf")])
def test_vector_formats_keep_the_native_crs(tmp_path, feature, suffix, driver):
    out = tmp_path / f"hit{suffix}"
    write_features(out, [feature])
    info = pyogrio.read_info(out, force_total_bounds=True)
    assert (info["driver"], info["features"], info["crs"]) == (driver, 1, "EPSG:32633")
    np.testing.assert_allclose(info["total_bounds"], _bounds(feature.ring_xy), rtol=0, atol=1e-6)
    assert list(info["fields"]) == [*PROPERTIES, "tile"]
    _, _, _, fields = pyogrio.raw.read(out)
    read = dict(zip(info["fields"], (column[0] for column in fields)))
    assert json.loads(read["bbox_px"]) == list(BOX)
    assert read["rank"] == 1 and read["area_m2"] == feature.properties["area_m2"]


def test_unknown_format_and_missing_folder(tmp_path, feature):
    with pytest.raises(UsageError, match=r"unknown output format '\.shp' \(use \.geojson, \.json, \.gpkg, \.fgb\)"):
        write_features(tmp_path / "hit.shp", [feature])
    with pytest.raises(InputFileError, match="does not exist"):
        write_features(tmp_path / "missing" / "hit.geojson", [feature])
    assert list(tmp_path.iterdir()) == [tmp_path / "ref.tif"]


def test_missing_pyogrio_is_a_usage_error(tmp_path, feature, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyogrio.raw", None)
    with pytest.raises(UsageError, match=r"pip install pyogrio"):
        write_features(tmp_path / "hit.gpkg", [feature])


def test_failed_write_leaves_the_old_file_and_no_debris(tmp_path, feature, monkeypatch):
    out = tmp_path / "hit.gpkg"
    write_features(out, [feature])
    before = out.read_bytes()

    def crash(path, *args, **kwargs):
        with open(path, "wb") as half_written:
            half_written.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(pyogrio.raw, "write", crash)
    with pytest.raises(InputFileError, match=r"cannot write .*hit\.gpkg: disk full"):
        write_features(out, [feature])
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hit.gpkg", "ref.tif"]


def test_extra_properties_cannot_replace_standard_ones(tmp_path):
    path = write_geotiff(tmp_path / "ref.tif", np.full((3, 8, 8), 90, dtype=np.uint8))
    with open_reference(path) as raster, pytest.raises(ValueError, match="score"):
        make_feature(raster, Detection(BOX, 0.5, 1), query="q", click=(0, 0), model="m", extra={"score": 1})


def test_a_geopackage_layer_is_replaced_and_the_files_other_layers_kept(tmp_path, feature):
    """`-o project.gpkg` adds or replaces its layer (named after the file) and leaves the analyst's others alone."""
    project = tmp_path / "project.gpkg"
    ring = feature.ring_xy
    pyogrio.raw.write(
        str(project), geometry=np.array([_polygon(ring)], dtype=object), field_data=[np.array(["road"], dtype=object)],
        fields=["kind"], driver="GPKG", geometry_type="Polygon", crs=feature.crs_wkt, layer="roads",
    )  # fmt: skip
    write_features(project, [feature])
    write_features(project, [feature, feature])  # the project layer again: replaced, not appended to
    layers = {name: pyogrio.read_info(project, layer=name)["features"] for name, _ in pyogrio.list_layers(project)}
    assert layers == {"roads": 1, "project": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["project.gpkg", "ref.tif"]


def _polygon(ring: np.ndarray) -> bytes:
    import struct

    return struct.pack("<BIII", 1, 3, 1, len(ring)) + np.ascontiguousarray(ring, dtype="<f8").tobytes()


def _across_the_antimeridian(crs: str, pixel_m: float) -> Affine:
    """A north-up transform whose 200-pixel-wide raster at 17 S has 180 degrees at column 100."""
    x, y = pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(180.0, -17.0)
    return Affine(pixel_m, 0.0, x - 100 * pixel_m, 0.0, -pixel_m, y)


@pytest.mark.parametrize(
    ("crs", "pixel"),
    # A geographic raster running past 180 degrees east (some Pacific mosaics do), and UTM zone 1 south across it.
    [("EPSG:4326", 1e-5), ("EPSG:32701", 0.5)],
)
def test_a_footprint_across_the_antimeridian_is_valid_rfc_7946(tmp_path, crs, pixel):
    transform = _across_the_antimeridian(crs, pixel)
    path = write_geotiff(tmp_path / "ref.tif", np.full((3, 60, 200), 90, np.uint8), crs=crs, transform=transform)
    with open_reference(path) as raster:
        feature = make_feature(raster, Detection((10.0, 10.0, 190.0, 50.0), 0.5, 1), query="q", click=(1, 1), model="m")
    geometry = json.loads(geojson_text([feature]))["features"][0]["geometry"]
    assert geometry["type"] == "MultiPolygon"
    west, east = (np.array(polygon[0]) for polygon in geometry["coordinates"])
    for part in (west, east):
        assert (np.abs(part[:, 0]) <= 180).all() and (part[0] == part[-1]).all()
        assert 0.5 * np.sum(part[:-1, 0] * part[1:, 1] - part[1:, 0] * part[:-1, 1]) > 0  # counter-clockwise
    assert west[:, 0].max() == 180.0 and east[:, 0].min() == -180.0
    # The box starts 90 pixels west of 180 degrees (0.5 m is 4.7e-6 degrees of longitude at 17 S).
    degrees_per_pixel = 1e-5 if crs == "EPSG:4326" else 4.7e-6
    assert west[:, 0].min() == pytest.approx(180 - 90 * degrees_per_pixel, abs=5e-6)
    assert -180.0 <= feature.properties["center_lon"] <= 180.0
    assert feature.properties["area_m2"] > 0
    written = tmp_path / "hit.geojson"
    write_features(written, [feature])
    assert pyogrio.read_info(written)["features"] == 1


def test_a_footprint_away_from_the_antimeridian_stays_one_polygon(feature):
    geometry = json.loads(geojson_text([feature]))["features"][0]["geometry"]
    assert geometry["type"] == "Polygon" and len(geometry["coordinates"][0]) == 5


def test_property_columns_type_each_property_over_all_features():
    columns = property_columns(
        [
            {"rank": 1, "score": 1, "verified": True, "bbox_px": [1.0, 2.0, 3.0, 4.0]},
            {"rank": 2, "score": 0.5, "verified": False, "label": "roof"},
        ]
    )
    assert list(columns) == ["rank", "score", "verified", "bbox_px", "label"]
    assert columns["rank"].dtype == np.int64 and columns["score"].dtype == np.float64
    assert columns["verified"].dtype == bool
    # Lists become JSON text; a property a feature lacks is null there.
    assert columns["bbox_px"].tolist() == ["[1.0, 2.0, 3.0, 4.0]", None]
    assert columns["label"].tolist() == [None, "roof"]
