"""`dvc exp show --only-changed` after two `lr` runs: the metrics of train and evaluate change, of the params only
``lr``, of the deps the fine-tuned weights' hash; the table, estimated as DVC lays it out, fits a 200-column
terminal (test_pipeline_e2e checks the table DVC really prints)."""

from __future__ import annotations

import json

from pipeline.scoring.summary import headline
from pipeline.training.curves import headline as train_headline
from tests.helpers import ROOT

FIXED = 30  # the Experiment and Created columns
TERMINAL = 200
# metrics no lr moves: the pretrained model's, the test and val triplets, the steps run (no early stopping by
# default) and the step of the kept weights (train.keep: last)
SAME_FOR_EVERY_LR = {"pretrained.psnr", "pretrained.ssim", "triplets", "val.triplets", "step", "val.gain_step"}


def flat_keys(values: dict, prefix: str = "") -> list[str]:
    """The keys of nested ``values`` as DVC flattens them (``psnr.gain``), in order."""
    return [key for name, value in values.items()
            for key in (flat_keys(value, f"{prefix}{name}.") if isinstance(value, dict) else [f"{prefix}{name}"])]


def headers(files: dict[str, list[str]]) -> list[str]:
    """DVC's column names: the key alone, or ``path:key`` when two files have it (as ``dvc exp show`` does)."""
    every = [key for keys in files.values() for key in keys]
    return [key if every.count(key) == 1 else f"{path}:{key}" for path, keys in files.items() for key in keys]


WEIGHTS = "models/finetuned/flownet.pkl"  # a dep of evaluate: DVC shows its md5 (32 characters) when it changes


def width(columns: list[str]) -> int:
    """Each column as wide as its name or its widest value (a number at DVC's 5 digits: 8; the md5: 32), plus 3."""
    return FIXED + sum(max(len(column), 32 if column == WEIGHTS else 8) + 3 for column in columns)


def written_metrics() -> tuple[dict, dict]:
    """evaluate's and train's metrics.json as this code writes them, with every key they can have."""
    gain = {"psnr": 0.29, "psnr_ci95_low": 0.19, "psnr_ci95_high": 0.42, "ssim": 0.001, "ssim_ci95_low": 0.0005,
            "ssim_ci95_high": 0.0015, "share_improved": 0.83}
    segments = {"vmaf": -0.06, "vmaf_ci95_low": -0.09, "vmaf_ci95_high": -0.002, "psnr": 0.22}
    evaluate = headline({"triplets": 72, "pretrained": {"psnr": 37.2, "ssim": 0.95}, "finetuned_minus_pretrained": gain,
                         "segments": {"segments": 3, "finetuned_minus_pretrained": segments}})
    dvclive = json.loads((ROOT / "results/train/metrics.json").read_text())  # the last value of every curve
    dvclive["val"].update(gain=0.09, low=-0.08, high=0.25, gain_step=160, triplets=28)
    return evaluate, train_headline(dvclive)


def test_exp_show_only_changed_of_two_lr_runs_fits_200_columns():
    """Every metric an lr change can move, ``lr`` and the weights' hash, the gain and its interval among them."""
    evaluate, train = written_metrics()
    columns = headers({"results/train/metrics.json": flat_keys(train),
                       "results/evaluate/metrics.json": flat_keys(evaluate), "params.yaml": ["lr"],
                       "deps": [WEIGHTS]})
    assert len(columns) == 18 and width(columns) > TERMINAL  # all of them: what `dvc exp show` lists without the flag
    changed = [column for column in columns if column not in SAME_FOR_EVERY_LR]
    assert changed == ["val.gain", "val.low", "val.high", "psnr.gain", "psnr.low", "psnr.high",
                       "vmaf.gain", "vmaf.low", "vmaf.high", "improved", "lr", WEIGHTS]
    assert width(changed) == 190 < TERMINAL  # with the old names (gain.psnr_high, ...) 219; DVC printed 216
