"""The augment plan read back by training: every value is checked against its range, its triplet and the frame size,
and a bad one is one line naming the file, the row, the column and what is allowed."""

from __future__ import annotations

import csv
import functools
import io
import string

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.augment import plan_views
from pipeline.core.errors import UserError
from pipeline.core.params import Augment, build
from pipeline.core.paths import KEPT
from pipeline.footage.views import PLAN_COLUMNS, apply_view, read_plan, scaled_size
from tests.helpers import ROOT

MANIFEST = "data/triplets/manifest.csv"
# triplets 0 and 1 train (96x128 and 80x100, whose crop is 64), triplet 2 test
TRIPLETS = pd.DataFrame({
    "triplet": [0, 1, 2], "clip": ["a.mp4", "b.mp4", "b.mp4"], "split": ["train", "train", "test"],
    "status": [KEPT] * 3, "height": [96, 80, 80], "width": [128, 100, 100], "timestep": [0.5, 0.25, 0.5],
    "path0": [f"frames/{i}_0.png" for i in range(3)], "path_t": [f"frames/{i}_t.png" for i in range(3)],
    "path1": [f"frames/{i}_1.png" for i in range(3)]})
TRAIN = TRIPLETS[TRIPLETS.split == "train"].reset_index(drop=True)
# the values a later check compares a column with: a change there may be reported on these columns instead
DEPENDENT = {"crop": {"top", "left"}, "scale": {"top", "left"}, "reversed": {"timestep"},
             "triplet": {"clip", "path0", "path_t", "path1", "height", "width", "timestep"}}


@functools.cache
def planned(downscale: float) -> str:
    """Four views of each train triplet as augment plans them (jitter always, so the factors vary), as CSV."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    cfg = build(Augment, {**params["augment"], "crop": 64, "views_per_triplet": 4, "jitter": 1.0,
                          "downscale": downscale}, "augment.")
    return plan_views(TRAIN, cfg, seed=5).to_csv(index=False)


def plan_cells(downscale: float = 0.0) -> pd.DataFrame:
    """:func:`planned` as the text of each cell, to change."""
    return pd.read_csv(io.StringIO(planned(downscale)), dtype=str, keep_default_na=False)


def read(tmp_path, cells: pd.DataFrame) -> pd.DataFrame:
    path = tmp_path / "plan.csv"
    cells.to_csv(path, index=False, quoting=csv.QUOTE_ALL)  # every cell one cell, whatever its text (a lone \r too)
    return read_plan(path, TRAIN, MANIFEST)


def test_the_plan_augment_writes_is_read_back_exactly(tmp_path):
    cells = plan_cells(downscale=0.5)
    views = read(tmp_path, cells)
    assert list(views.columns) == PLAN_COLUMNS and len(views) == 8
    assert views.brightness.tolist() == [float(v) for v in cells.brightness]
    assert views.vflip.dtype == bool and views.crop.dtype == np.int64 and (views.scale < 1).any()


def test_flags_may_be_written_as_1_and_0(tmp_path):
    cells = plan_cells()
    cells["hflip"] = ["1", "0"] * 4
    assert read(tmp_path, cells).hflip.tolist() == [True, False] * 4


@pytest.mark.parametrize("column, row, value, fragment", [
    ("top", 0, "5000", "row 1 (line 2), column top = 5000: expected an integer from 0 to 32 (a 64-pixel crop "
                       "inside the 128x96 frame)"),
    ("top", None, "", "row 1 (line 2), column top = (empty): expected an integer"),
    ("top", None, "nan", "row 1 (line 2), column top = nan: expected an integer"),
    ("left", 5, "-300", "row 6 (line 7), column left = -300: expected an integer from 0 to 36 (a 64-pixel crop "
                        "inside the 100x80 frame)"),
    ("top", 2, "12.5", "row 3 (line 4), column top = 12.5: expected an integer"),
    ("rotation", 3, "45", "row 4 (line 5), column rotation = 45: expected one of 0, 90, 180, 270"),
    ("scale", 1, "nan", "row 2 (line 3), column scale = nan: expected a number"),
    ("scale", 1, "0", "row 2 (line 3), column scale = 0: expected a number above 0 and at most 1"),
    ("scale", 1, "1.5", "column scale = 1.5: expected a number above 0 and at most 1"),
    ("vflip", 2, "2", "row 3 (line 4), column vflip = 2: expected True or False (or 1 or 0)"),
    ("reversed", 2, "yes", "column reversed = yes: expected True or False (or 1 or 0)"),
    ("crop", 4, "96", "row 5 (line 6), column crop = 96: expected a multiple of 32 from 64 to 64 (the frames are "
                      "100x80)"),
    ("crop", 0, "48", "column crop = 48: expected a multiple of 32 from 64 to 96 (the frames are 128x96)"),
    ("crop", 0, "80", "column crop = 80: expected a multiple of 32 from 64 to 96"),
    ("triplet", 7, "999", f"row 8 (line 9), column triplet = 999: expected the id of one of the 2 train triplets of "
                          f"{MANIFEST}"),
    ("triplet", 7, "2", "column triplet = 2: expected the id of one of the 2 train triplets"),  # a test triplet
    ("height", 0, "97", f"column height = 97: expected 96 (triplet 0 in {MANIFEST})"),
    ("path_t", 4, "frames/0_t.png", f"column path_t = frames/0_t.png: expected frames/1_t.png (triplet 1 in "
                                    f"{MANIFEST})"),
    ("clip", 0, "", "column clip = (empty): expected a non-empty name"),
    ("brightness", 6, "3", "row 7 (line 8), column brightness = 3: expected a number from 0.5 to 1.5"),
    ("contrast", 6, "-1", "column contrast = -1: expected a number from 0.5 to 1.5"),
    ("timestep", 0, "inf", "column timestep = inf: expected a number"),
    ("view", 0, "first", "column view = first: expected an integer"),
    ("view", 0, "1\n2", "column view = '1\\n2': expected an integer"),  # a quoted line break, shown escaped
])
def test_each_bad_value_is_one_line_naming_the_row_and_column(tmp_path, column, row, value, fragment):
    cells = plan_cells()
    if row is None:
        cells[column] = value
    else:
        cells.loc[row, column] = value
    with pytest.raises(UserError) as caught:
        read(tmp_path, cells)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'plan.csv'}, row ") and "\n" not in message
    assert fragment in message and message.endswith("run `dvc repro augment` to write the plan again")


def test_a_timestep_that_is_not_the_triplets_is_refused(tmp_path):
    cells = plan_cells()
    row = int(np.flatnonzero(cells.triplet == "1")[0])
    right = 0.75 if cells.reversed[row] == "True" else 0.25
    cells.loc[row, "timestep"] = "0.5"
    with pytest.raises(UserError, match=rf"row {row + 1} .*column timestep = 0.5: expected {right} \(the timestep "
                                        "of triplet 1"):
        read(tmp_path, cells)


def test_a_missing_column_names_it(tmp_path):
    with pytest.raises(UserError, match="plan.csv: no column rotation; run `dvc repro augment` again"):
        read(tmp_path, plan_cells().drop(columns="rotation"))


# Cells a user or a broken tool might leave: integers near and far, numbers, text, empty, nan and inf
CELLS = st.one_of(st.integers(-500, 500).map(str), st.floats(allow_nan=True, allow_infinity=True).map(str),
                  st.sampled_from(["", "nan", "inf", "-inf", "True", "False", "1", "0", "x", "1e9", " 64 ", "0x10"]),
                  st.text(string.printable, max_size=5))


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_changed_cell_is_read_safely_or_named(tmp_path, data):
    """Property: a plan with one cell changed to anything is either accepted, and then every view is a full crop
    inside its frame, or refused with one line naming that row and that column (or one checked against it)."""
    cells = plan_cells(downscale=0.5)
    row = data.draw(st.integers(0, len(cells) - 1), label="row")
    column = data.draw(st.sampled_from(PLAN_COLUMNS), label="column")
    cells.loc[row, column] = data.draw(CELLS, label="value")
    try:
        views = read(tmp_path, cells)
    except UserError as err:
        message = str(err)
        assert "\n" not in message and message.startswith(f"{tmp_path / 'plan.csv'}, row {row + 1} (line {row + 2}), "
                                                          "column ")
        named = message.split("column ", 1)[1].split(" = ", 1)[0]
        assert named in {column} | DEPENDENT.get(column, set())
        return
    for view in views.to_dict("records"):
        height, width = scaled_size(view["height"], view["width"], view["scale"], view["crop"])
        assert 0 <= view["top"] <= height - view["crop"] and 0 <= view["left"] <= width - view["crop"]
        frames = np.zeros((3, view["height"], view["width"], 3), np.uint8)
        assert apply_view(frames, view).shape == (3, view["crop"], view["crop"], 3)
