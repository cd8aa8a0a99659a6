"""Training batches from planned views of several crop sizes: every batch stacks, the same plan gives the same
batches bit for bit (with or without loader workers), and a resumed run sees the same batches."""

from __future__ import annotations

import atexit
import itertools
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from pipeline.core.errors import UserError
from pipeline.core.params import load_params
from pipeline.core.paths import AUGMENTED_DIR, KEPT, PLAN_FILE, TRIPLETS_DIR
from pipeline.training.loop import (
    LoaderWorker,
    SizeGroupedBatches,
    TrainViews,
    batches,
    drop_lost_connections,
    make_accelerator,
    make_loader,
)

SIZES = [64] * 5 + [96] * 7 + [64] * 4  # two crop sizes, interleaved as augment plans them (triplet order)


def write_views(root, sizes=SIZES) -> None:
    """A triplet of frames per view, stored as extract does (PNG, RGB, in the manifest), each frame filled with one
    value that tells the view and the frame apart, and a plan that crops it with a few transforms."""
    frames = root / TRIPLETS_DIR / "frames"
    frames.mkdir(parents=True)
    rows = []
    for view, side in enumerate(sizes):
        paths = []
        for k in range(3):
            image = np.full((side + 16, side + 40, 3), (view, k, 200), np.uint8)
            image[:, :, 2] = np.arange(side + 40, dtype=np.uint8)  # a ramp across: shows flips
            cv2.imwrite(str(frames / f"{view}_{k}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            paths.append(f"frames/{view}_{k}.png")
        rows.append({"view": view, "triplet": view, "clip": "c", "path0": paths[0], "path_t": paths[1],
                     "path1": paths[2], "height": side + 16, "width": side + 40, "crop": side, "scale": 1.0,
                     "top": view % 16, "left": view, "channel_reverse": False, "vflip": view % 2 == 1,
                     "hflip": view % 3 == 0, "reversed": view % 4 == 0, "rotation": 90 * (view % 4),
                     "brightness": 1.0, "contrast": 1.0, "timestep": 0.5})
    (root / AUGMENTED_DIR).mkdir(parents=True)
    pd.DataFrame(rows).to_csv(root / AUGMENTED_DIR / PLAN_FILE, index=False)
    manifest = pd.DataFrame(rows)[["triplet", "clip", "path0", "path_t", "path1", "height", "width", "timestep"]]
    manifest.assign(split="train", status=KEPT).to_csv(root / TRIPLETS_DIR / "manifest.csv", index=False)


def test_views_are_made_from_the_frames_as_the_plan_says(tmp_path):
    write_views(tmp_path)
    views = TrainViews(tmp_path / AUGMENTED_DIR / PLAN_FILE, tmp_path / TRIPLETS_DIR)
    assert len(views) == 16 and list(views.sizes) == SIZES
    img0, img_t, img1, t = views[5]  # the first 96 view: vflip, rotation 90, left = 5
    assert img0.shape == (3, 96, 96) and float(t) == 0.5
    assert float(img0[0, 0, 0]) == pytest.approx(5 / 255) and float(img_t[1, 0, 0]) == pytest.approx(1 / 255)
    ramp = np.rot90(np.arange(5, 5 + 96)[None].repeat(96, 0)[::-1], 1)  # vflip, then a quarter turn
    assert np.array_equal((img0[2] * 255).round().numpy(), ramp)
    img0, _, img1, _ = views[12]  # reversed: I1 comes first
    assert float(img0[1, 0, 0]) == pytest.approx(2 / 255) and float(img1[1, 0, 0]) == 0.0


def test_a_missing_frame_stops_before_training_naming_the_file(tmp_path):
    write_views(tmp_path)
    (tmp_path / TRIPLETS_DIR / "frames/7_1.png").unlink()
    message = r"frames/7_1.png: missing \(the augment plan uses it\); run `dvc repro extract`"
    with pytest.raises(UserError, match=message):
        TrainViews(tmp_path / AUGMENTED_DIR / PLAN_FILE, tmp_path / TRIPLETS_DIR)


def test_a_bad_plan_value_stops_before_training_naming_the_row_and_column(tmp_path):
    write_views(tmp_path)
    plan = pd.read_csv(tmp_path / AUGMENTED_DIR / PLAN_FILE)
    plan.loc[3, "rotation"] = 45
    plan.to_csv(tmp_path / AUGMENTED_DIR / PLAN_FILE, index=False)
    with pytest.raises(UserError, match=r"plan.csv, row 4 \(line 5\), column rotation = 45: expected one of 0, 90, "):
        TrainViews(tmp_path / AUGMENTED_DIR / PLAN_FILE, tmp_path / TRIPLETS_DIR)


def test_batches_share_a_size_and_the_order_depends_only_on_seed_and_epoch():
    sizes = np.array(SIZES)
    sampler = SizeGroupedBatches(sizes, 3, seed=7)
    first = list(sampler)
    assert len(first) == len(sampler) == 3 + 2  # 9 samples of 64, 7 of 96: the remainders are left out
    assert all(len(set(sizes[b])) == 1 and len(b) == 3 for b in first)
    assert len({i for b in first for i in b}) == 15
    assert list(SizeGroupedBatches(sizes, 3, seed=7)) == first
    sampler.set_epoch(1)
    assert list(sampler) != first


def prepared_loader(root, monkeypatch, params_dict, workers: int = 0):
    params_dict["train"].update(batch_size=2, arch="hdv3", num_workers=workers)
    (root / "params.yaml").write_text(yaml.safe_dump(params_dict))
    monkeypatch.chdir(root)
    params = load_params()
    accelerator = make_accelerator(params.train)
    return accelerator, accelerator.prepare(make_loader(params.train, params.base.seed, accelerator))


def batch_stream(accelerator, loader, start: int, count: int) -> list[np.ndarray]:
    stream = itertools.islice(batches(accelerator, loader, start), count)
    return [torch.stack(batch[:3]).numpy().copy() for batch in stream]


def test_the_loader_stacks_mixed_sizes_and_resumes_mid_epoch_on_the_same_batches(tmp_path, monkeypatch, params_dict):
    write_views(tmp_path)
    accelerator, loader = prepared_loader(tmp_path, monkeypatch, params_dict)
    assert len(loader) == 4 + 3  # 9 // 2 of 64, 7 // 2 of 96

    def stream(start: int, count: int) -> list[np.ndarray]:
        return batch_stream(accelerator, loader, start, count)

    whole = stream(0, 25)  # two and a half epochs
    assert {b.shape[-1] for b in whole} == {64, 96} and all(b.shape[1] == 2 for b in whole)
    for start in (4, 10, 13):
        resumed = stream(start, 25 - start)
        assert all(np.array_equal(a, b) for a, b in zip(whole[start:], resumed, strict=True))


@pytest.mark.slow  # starts loader worker processes
def test_the_same_plan_gives_bit_identical_batches_with_and_without_workers(tmp_path, monkeypatch, params_dict):
    write_views(tmp_path)
    accelerator, loader = prepared_loader(tmp_path, monkeypatch, params_dict)
    alone = batch_stream(accelerator, loader, 0, 10)
    accelerator, loader = prepared_loader(tmp_path, monkeypatch, params_dict, workers=2)
    workers = batch_stream(accelerator, loader, 0, 10)
    assert len(alone) == len(workers) == 10
    assert all(a.tobytes() == b.tobytes() for a, b in zip(alone, workers, strict=True))


@pytest.mark.slow  # starts a loader worker process
def test_a_frame_that_breaks_in_a_worker_is_one_line(tmp_path, monkeypatch, params_dict):
    write_views(tmp_path)
    accelerator, loader = prepared_loader(tmp_path, monkeypatch, params_dict, workers=1)
    for path in (tmp_path / TRIPLETS_DIR / "frames").iterdir():
        path.write_bytes(b"not a png")
    with pytest.raises(UserError) as caught:
        batch_stream(accelerator, loader, 0, 1)
    assert "\n" not in str(caught.value) and str(caught.value).endswith("cannot be read as an image (corrupt or "
                                                                       "unsupported format)")


def test_the_plan_reads_back_exactly(tmp_path):
    write_views(tmp_path)
    path = tmp_path / AUGMENTED_DIR / PLAN_FILE
    plan = pd.read_csv(path)
    plan["brightness"] = np.random.default_rng(0).uniform(0.9, 1.1, len(plan))
    plan.to_csv(path, index=False)
    views = TrainViews(path, tmp_path / TRIPLETS_DIR)
    assert views.columns["brightness"].tolist() == plan["brightness"].tolist()


def test_loader_workers_start_fresh_not_forked(tmp_path, monkeypatch, params_dict):
    """A worker forked from the training process hung in its first batch (the train stage made no step in
    140 s); spawned workers do not inherit the training process's thread pools."""
    write_views(tmp_path)
    _, loader = prepared_loader(tmp_path, monkeypatch, params_dict, workers=1)
    assert loader.num_workers == 1 and loader.persistent_workers
    assert loader.multiprocessing_context.get_start_method() == "spawn"
    assert loader.multiprocessing_context.Process is LoaderWorker


def leave_a_thread_and_an_exit_handler(marker: str, fail: bool) -> None:
    """A worker's target that returns with a daemon thread still running and an exit handler registered, as
    torch's worker loop returns with the queue's feeder thread (the handler would write ``marker``)."""
    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
    atexit.register(Path(marker).write_text, "Python's shutdown ran")
    print("worker done")
    if fail:
        raise RuntimeError("the worker loop failed")


@pytest.mark.slow  # starts two worker processes
@pytest.mark.parametrize("fail", [False, True])
def test_a_loader_worker_ends_without_pythons_shutdown(tmp_path, fail, capfd):
    """A worker ending through Python's shutdown aborted 4 times in 120 exits (a traceback in the training
    process); it ends at once when its loop returns, its output flushed, and a loop that fails still exits 1."""
    marker = tmp_path / "shutdown-ran"
    worker = LoaderWorker(target=leave_a_thread_and_an_exit_handler, args=(str(marker), fail), daemon=True)
    worker.start()
    worker.join(timeout=120)
    assert worker.exitcode == (1 if fail else 0)
    assert not marker.exists() or fail  # a failed loop goes through Python's shutdown, as before
    assert "worker done" in capfd.readouterr().out


@pytest.mark.parametrize("error", [BrokenPipeError("[Errno 32] Broken pipe"), ConnectionResetError(), EOFError()])
def test_a_worker_says_nothing_of_a_connection_the_training_process_dropped(error, capsys):
    drop_lost_connections(type(error), error, None)
    assert capsys.readouterr().err == ""


def test_a_worker_reports_any_other_uncaught_exception(capsys):
    try:
        raise KeyError("batch")
    except KeyError as err:
        drop_lost_connections(KeyError, err, err.__traceback__)
    assert "Traceback" in capsys.readouterr().err
