"""Training batches from crops of several sizes: every batch stacks, and a resumed run sees the same batches."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline.core.params import load_params
from pipeline.core.paths import AUGMENTED_DIR, samples_file
from pipeline.training.loop import SizeGroupedBatches, TrainSamples, batches, make_accelerator, make_loader

SIZES = [64] * 5 + [96] * 7 + [64] * 4  # two crop sizes, interleaved as augment writes them (triplet order)


def write_samples(root, sizes=SIZES) -> None:
    folder = root / AUGMENTED_DIR
    folder.mkdir(parents=True)
    for side in sorted(set(sizes)):
        count = sizes.count(side)
        values = np.arange(count, dtype=np.uint8)[:, None, None, None, None] + side
        np.save(folder / samples_file(side), np.broadcast_to(values, (count, 3, side, side, 3)).copy())
    pd.DataFrame({"sample": range(len(sizes)), "crop": sizes, "timestep": 0.5}).to_csv(folder / "manifest.csv",
                                                                                        index=False)


def test_samples_of_each_size_come_from_their_own_array_in_order(tmp_path):
    write_samples(tmp_path)
    samples = TrainSamples(tmp_path / AUGMENTED_DIR)
    assert len(samples) == 16
    img0, _, _, t = samples[5]  # the first 96 sample
    assert img0.shape == (3, 96, 96) and float(img0[0, 0, 0]) == pytest.approx(96 / 255) and float(t) == 0.5
    img0 = samples[12][0]  # the sixth 64 sample
    assert img0.shape == (3, 64, 64) and float(img0[0, 0, 0]) == pytest.approx((64 + 5) / 255)


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


def test_the_loader_stacks_mixed_sizes_and_resumes_mid_epoch_on_the_same_batches(tmp_path, monkeypatch, params_dict):
    write_samples(tmp_path)
    params_dict["train"].update(batch_size=2, arch="hdv3")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params_dict))
    monkeypatch.chdir(tmp_path)
    params = load_params()
    accelerator = make_accelerator(params)
    loader = accelerator.prepare(make_loader(params, accelerator))
    assert len(loader) == 4 + 3  # 9 // 2 of 64, 7 // 2 of 96

    def stream(start: int, count: int) -> list[np.ndarray]:
        return [frames.numpy().copy() for frames, *_ in itertools.islice(batches(accelerator, loader, start), count)]

    whole = stream(0, 25)  # two and a half epochs
    assert {b.shape[-1] for b in whole} == {64, 96} and all(len(b) == 2 for b in whole)
    for start in (4, 10, 13):
        resumed = stream(start, 25 - start)
        assert all(np.array_equal(a, b) for a, b in zip(whole[start:], resumed))
