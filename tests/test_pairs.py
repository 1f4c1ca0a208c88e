"""The pair layer every pair source writes through: split sizes, fallback boxes, and splits written in the CVOGL layout."""

import numpy as np
import pytest

from smgeo_cli.data.cvogl import CATEGORY_RANDOM, QUERY_DIR, load_records, read_homographies
from smgeo_cli.data.pairs import (
    CATEGORY_OBJECT,
    TrainingPair,
    check_pair_options,
    held_out_units,
    object_size_range,
    random_mask,
    split_counts,
    write_splits,
)
from smgeo_cli.errors import UsageError


def test_val_and_test_get_their_rounded_fractions_and_train_the_rest():
    assert split_counts(20, 0.1, 0.1) == {"train": 16, "val": 2, "test": 2}
    assert split_counts(7, 0.25, 0.0) == {"train": 5, "val": 2, "test": 0}
    assert split_counts(5, 0.0, 1.0) == {"train": 0, "val": 0, "test": 5}  # a held-out set only
    assert split_counts(3, 0.5, 0.5) == {"train": 0, "val": 2, "test": 1}  # rounding never overdraws


@pytest.mark.parametrize(
    ("n", "val_frac", "test_frac", "gsd_m"),
    [(0, 0.1, 0.1, None), (10, 0.7, 0.6, None), (10, -0.1, 0.1, None), (10, 0.1, 0.1, 0.0)],
)
def test_bad_counts_fractions_or_gsd_are_usage_errors(n, val_frac, test_frac, gsd_m):
    with pytest.raises(UsageError):
        check_pair_options(n, val_frac, test_frac, gsd_m)


def test_held_out_splits_take_units_in_proportion_to_their_pairs_and_at_least_the_minimum():
    assert held_out_units(20, {"train": 80, "val": 10, "test": 10}, minimum=1) == {"val": 2, "test": 2}
    assert held_out_units(20, {"train": 98, "val": 1, "test": 1}, minimum=2) == {"val": 2, "test": 2}
    assert held_out_units(20, {"train": 10, "val": 0, "test": 0}, minimum=1) == {}


def test_fallback_box_is_object_sized_and_only_where_the_query_sees_it_whole():
    rng = np.random.default_rng(0)
    low, high = object_size_range(1.0, 200)
    for _ in range(20):
        ys, xs = np.nonzero(random_mask(rng, 200, 1.0))
        assert low <= max(np.ptp(xs), np.ptp(ys)) + 1 <= high + 1
    left_half = random_mask(rng, 200, 1.0, visible=lambda box: box[2] <= 100)
    assert not left_half[:, 100:].any()
    assert random_mask(rng, 200, 1.0, visible=lambda box: False) is None


def _pair(rng: np.random.Generator, split: str) -> TrainingPair:
    """A tiny pair whose tile value and click come from the generator, so pairs show which draws made them."""
    value = int(rng.integers(0, 256))
    tile = np.full((16, 16, 3), value, dtype=np.uint8)
    category = CATEGORY_RANDOM if value % 2 else CATEGORY_OBJECT
    return TrainingPair(
        tile,
        tile[:8, :8],
        (2.0, 2.0, 6.0, 6.0),
        (3.0, 3.0),
        category,
        f"{split}_{value}.jpg",
        np.eye(3),
        photo="DJI_0001" if split == "val" else "",
    )


def test_each_split_is_written_with_its_own_draws_names_and_homographies(tmp_path):
    seen = []
    fallbacks = write_splits(tmp_path / "a", "Set", {"train": 3, "val": 2, "test": 0}, 5, _pair, seen.append)
    assert seen == ["train"] * 3 + ["val"] * 2
    train, val = load_records(tmp_path / "a", "train"), load_records(tmp_path / "a", "val")
    assert [r.query_name for r in train] == [f"Set_train_{k:06d}.jpg" for k in range(3)]
    assert [r.query_name for r in val] == [f"Set_val_{k:06d}_DJI_0001.jpg" for k in range(2)]
    assert [r.id for r in train] == [0, 1, 2] and fallbacks == sum(r.category == CATEGORY_RANDOM for r in train + val)
    assert set(read_homographies(tmp_path / "a", "val")) == {r.query_name for r in val}
    assert not list(tmp_path.glob("a/*_test.pth"))  # a split without pairs gets no file
    # A split's pairs do not depend on how many the others get.
    write_splits(tmp_path / "b", "Set", {"train": 7, "val": 2, "test": 0}, 5, _pair)
    assert load_records(tmp_path / "b", "val") == val
    for record in val:
        assert (tmp_path / "a" / QUERY_DIR / record.query_name).read_bytes() == (
            tmp_path / "b" / QUERY_DIR / record.query_name
        ).read_bytes()
