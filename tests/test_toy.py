"""Generated toy pairs: tight boxes, clicks on the object, both objects in view, determinism."""

import re

import numpy as np
import pytest

from smgeo_cli.data.cvogl import QUERY_DIR, SATELLITE_DIR, load_records
from smgeo_cli.data.toy import COLOURS, render_scene, write_toy_dataset
from smgeo_cli.images import read_rgb

QUERY, REF = 96, 256


@pytest.fixture(scope="module")
def scenes():
    return [render_scene(np.random.default_rng(seed), QUERY, REF) for seed in range(24)]


def test_boxes_are_tight_around_the_drawn_object_inside_the_tile(scenes):
    for scene in scenes:
        assert scene.reference.shape == (REF, REF, 3) and scene.query.shape == (QUERY, QUERY, 3)
        for obj in scene.objects:
            x1, y1, x2, y2 = obj.box_xyxy
            assert 0 <= x1 < x2 <= REF and 0 <= y1 < y2 <= REF
            rows, cols = np.nonzero(obj.ref_mask)
            assert (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1) == (x1, y1, x2, y2)
            # Objects span 1/8 to 1/5 of the tile (a triangle's box is a bit smaller than its circle).
            assert 0.7 * REF / 8 <= max(x2 - x1, y2 - y1) <= REF / 5 + 1
            # The drawn colour is what the reference shows there (up to grain noise).
            drawn = scene.reference[obj.ref_mask].astype(float).mean(axis=0)
            assert np.abs(drawn - COLOURS[obj.colour]).max() < 6


def test_objects_differ_and_do_not_overlap(scenes):
    for scene in scenes:
        a, b = scene.objects
        assert a.shape != b.shape and a.colour != b.colour
        assert not np.any(a.ref_mask & b.ref_mask)


def test_click_lies_on_its_object_and_both_objects_are_in_the_query(scenes):
    for scene in scenes:
        for obj, other in (scene.objects, scene.objects[::-1]):
            x, y = obj.click_xy
            assert obj.query_mask[int(y), int(x)] and not other.query_mask[int(y), int(x)]
            # Wholly in view: the object's footprint does not touch the query's border.
            assert obj.query_mask.sum() > 20
            mask = obj.query_mask
            assert not (mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())


def test_written_dataset_loads_and_points_at_the_objects(tmp_path):
    counts = write_toy_dataset(tmp_path, 3, ("train", "val"), query_size=QUERY, ref_size=REF, seed=5)
    assert counts == {"train": 6, "val": 6}
    records = load_records(tmp_path, "train")
    assert len(records) == 6 and len({r.query_name for r in records}) == 3
    for record in records:
        assert re.fullmatch(r"\d+\.\d+_\d+\.\d+_\d+\.\d+_\d+\.jpg", record.sat_name)
        reference = read_rgb(tmp_path / SATELLITE_DIR / record.sat_name).astype(float)
        query = read_rgb(tmp_path / QUERY_DIR / record.query_name).astype(float)
        x1, y1, x2, y2 = (int(v) for v in record.box_xyxy)
        # The most vivid colour in the box is the clicked object's; the query
        # pixel under the click has the same colour (after the view's colour shift).
        patch = reference[y1:y2, x1:x2].reshape(-1, 3)
        vivid = patch[np.argsort(patch.max(axis=1) - patch.min(axis=1))[-20:]].mean(axis=0)
        target = min(COLOURS, key=lambda name: np.abs(np.array(COLOURS[name]) - vivid).sum())
        x, y = (int(v) for v in record.click_xy)
        clicked = query[y, x]
        nearest = min(COLOURS, key=lambda name: np.abs(np.array(COLOURS[name]) - clicked).sum())
        assert nearest == target
    # The two splits hold different scenes.
    assert {r.sat_name for r in records}.isdisjoint(r.sat_name for r in load_records(tmp_path, "val"))


def test_same_seed_same_pairs_other_seed_other_pairs(tmp_path):
    def write(folder, seed):
        write_toy_dataset(folder, 2, ("train",), query_size=QUERY, ref_size=REF, seed=seed)
        records = load_records(folder, "train")
        return records, read_rgb(folder / QUERY_DIR / records[0].query_name)

    first, first_query = write(tmp_path / "a", 1)
    again, again_query = write(tmp_path / "b", 1)
    other, other_query = write(tmp_path / "c", 2)
    assert first == again and np.array_equal(first_query, again_query)
    assert [r.box_xyxy for r in first] != [r.box_xyxy for r in other]
    assert not np.array_equal(first_query, other_query)
