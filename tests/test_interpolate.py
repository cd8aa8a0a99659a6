"""``python -m pipeline.interpolate``: a checkpoint applied to a video, run as a user runs it."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipeline.models import create_model, expected_shapes, save_checkpoint
from tests.golden import seeded_state
from tests.helpers import assert_user_error, make_clip, moving_texture, run_module

FRAMES = 5


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("interp")
    make_clip(root / "clip.avi", moving_texture(FRAMES, height=72, width=100), fps=24.0)
    for arch in ("4.18", "hdv3"):
        model = create_model(arch)
        model.load_state_dict(seeded_state(expected_shapes(arch)))
        save_checkpoint(model, root / f"{arch}.pkl")
    return root


def video_info(path) -> tuple[float, int, tuple[int, int]]:
    cap = cv2.VideoCapture(str(path))
    info = cap.get(cv2.CAP_PROP_FPS), int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), (int(cap.get(4)), int(cap.get(3)))
    cap.release()
    return info


def test_three_times_the_frames_at_three_times_the_rate(work):
    done = run_module("pipeline.interpolate", work, "clip.avi", "out.mp4", "--checkpoint", "4.18.pkl", "--multi", "3")
    assert done.returncode == 0, done.stderr
    assert "RIFE 4.18" in done.stderr and "interpolate" in done.stderr  # the log line and the progress bar
    fps, count, size = video_info(work / "out.mp4")
    assert (round(fps), count, size) == (72, (FRAMES - 1) * 3 + 1, (72, 100))


def test_png_frames_keep_the_originals_and_put_the_predictions_between(work):
    done = run_module("pipeline.interpolate", work, "clip.avi", "frames", "--checkpoint", "hdv3.pkl", "--multi", "4")
    assert done.returncode == 0, done.stderr
    written = sorted((work / "frames").glob("*.png"))
    assert len(written) == (FRAMES - 1) * 4 + 1
    cap = cv2.VideoCapture(str(work / "clip.avi"))
    originals = [cap.read()[1] for _ in range(FRAMES)]
    cap.release()
    for i, original in enumerate(originals):
        assert np.array_equal(cv2.imread(str(written[4 * i])), original)
    between = cv2.imread(str(written[2])).astype(int)
    assert 0 < np.abs(between - originals[0]).mean() and 0 < np.abs(between - originals[1]).mean()


@pytest.mark.parametrize("args, fragment", [
    (["clip.avi", "clip.avi", "--checkpoint", "4.18.pkl"], "clip.avi: is the input video"),
    (["clip.avi", "taken.mp4", "--checkpoint", "4.18.pkl"], "taken.mp4: exists; pass --overwrite"),
    (["clip.avi", "out.webm", "--checkpoint", "4.18.pkl"], "out.webm: cannot write .webm videos"),
    (["missing.avi", "x.mp4", "--checkpoint", "4.18.pkl"], "missing.avi: no such video file"),
    (["clip.avi", "x.mp4", "--checkpoint", "hdv3.pkl", "--multi", "3"], "--multi 3: hdv3.pkl is RIFE hdv3"),
    (["clip.avi", "x.mp4", "--checkpoint", "4.18.pkl", "--multi", "1"], "--multi 1: the frame rate multiplier"),
    (["clip.avi", "x.mp4", "--checkpoint", "clip.avi"], "clip.avi: not a readable PyTorch file"),
])
def test_bad_requests_stop_with_one_line_and_write_nothing(work, args, fragment):
    (work / "taken.mp4").write_bytes(b"keep me")
    assert_user_error(run_module("pipeline.interpolate", work, *args), fragment)
    assert (work / "taken.mp4").read_bytes() == b"keep me"
    assert not (work / "x.mp4").exists() and not list(work.glob(".*.tmp*"))


def test_png_output_onto_an_existing_file_is_refused(work):
    (work / "notes").write_text("keep")
    assert_user_error(run_module("pipeline.interpolate", work, "clip.avi", "notes", "--checkpoint", "4.18.pkl",
                                 "--overwrite"), "notes: is a file; PNG frames go to a folder")
    assert (work / "notes").read_text() == "keep"
