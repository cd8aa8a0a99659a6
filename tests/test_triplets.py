"""The stored triplets by split: a cap (evaluate.max_triplets, train.val_max_triplets) keeps that many, spread
evenly over the split in manifest order."""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline.core.errors import UserError
from pipeline.footage.triplets import split_triplets


def write_manifest(root, splits: list[str]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"triplet": range(len(splits)), "split": splits,
                  "status": ["kept" if i % 7 else "static" for i in range(len(splits))]}).to_csv(
        root / "manifest.csv", index=False)


def test_a_cap_keeps_that_many_spread_evenly_over_the_split(tmp_path):
    write_manifest(tmp_path, ["train", "test"] * 1000)
    whole = split_triplets("test", 0, tmp_path)
    assert len(whole) == 857 and set(whole.split) == {"test"} and (whole.status == "kept").all()
    capped = split_triplets("test", 100, tmp_path)
    assert len(capped) == 100 and capped.triplet.is_monotonic_increasing
    assert capped.triplet.iloc[0] == whole.triplet.iloc[0] and capped.triplet.iloc[-1] == whole.triplet.iloc[-1]
    gaps = capped.triplet.diff().dropna()
    assert gaps.max() <= 2 * gaps.min() + 2  # evenly spread, not the first 100
    assert split_triplets("test", 5000, tmp_path).equals(whole)


def test_no_manifest_names_the_stage_to_run(tmp_path):
    with pytest.raises(UserError, match="manifest.csv: missing; run `dvc repro extract` first"):
        split_triplets("test", 0, tmp_path)
