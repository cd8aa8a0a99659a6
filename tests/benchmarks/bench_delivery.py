"""Does the fine-tune's gain survive interpolate's video files? (run on demand, not in the suite):

    python -m tests.benchmarks.bench_delivery PROJECT CLIP [CLIP ...] [--frames N] [--codec h264] [--crfs 16,12,8]

For each clip, as ``evaluate`` rebuilds its test segments: every other frame is dropped and the kept ones (a
lossless FFV1 file at half the rate, with their own timestamps) go through ``python -m pipeline.interpolate``'s
own loop at ``--multi 2`` (scene cuts repeat the nearer frame, at PROJECT's ``extract.cut_threshold``), once with
PROJECT's ``models/pretrained/flownet.pkl`` and once with its ``models/finetuned/flownet.pkl``. The result is
encoded at each quality (delivery at each of ``--crfs`` or at its default CRF, and master) as interpolate writes
it (the input's colour tags) and decoded back. Prints, per clip: the mean PSNR (RGB and BT.601 luma, dB; a
pixel-exact frame counts as 100) of the interpolated frames against the dropped originals for each model,
before encoding and after decoding each file; the fine-tuned minus pretrained gain; the share of the gain before
encoding that is kept; and the file sizes.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from pipeline.core.params import load_params
from pipeline.core.paths import FINETUNED, PARAMS_FILE, PRETRAINED
from pipeline.footage.encoder import CODECS, DELIVERY, MASTER, VideoWriter, check_codec, output_colour
from pipeline.footage.interpolation import interpolate_video
from pipeline.footage.video import Frame, decode, probe
from pipeline.models import AUTO, load_checkpoint
from pipeline.scoring.metrics import MAX_PSNR, psnr, psnr_y

MODELS = (("pretrained", PRETRAINED), ("fine-tuned", FINETUNED))


class Frames:
    """A sink that keeps what interpolate writes, with the output timestamps."""

    def __init__(self) -> None:
        self.images: list[np.ndarray] = []
        self.pts: list[int] = []
        self.count = 0

    def write(self, rgb: np.ndarray, pts: int) -> None:
        self.images.append(rgb)
        self.pts.append(pts)
        self.count += 1


def half_rate(frames: list[Frame], info, path: Path) -> None:
    """Every other frame of ``frames`` (the first, third, ...) to ``path``, losslessly, keeping their times."""
    writer = VideoWriter(path, CODECS["ffv1"][MASTER], None, (info.height, info.width), info.rate / 2,
                         info.time_base)
    for frame in frames[::2]:
        writer.write(frame.image, frame.pts)
    writer.close()


# RGB PSNR, what evaluate reports; luma PSNR, what 4:2:0 keeps at full resolution (it halves the colour's)
METRICS = {"RGB PSNR": psnr, "luma PSNR (BT.601 Y)": psnr_y}


def mean_psnrs(predictions: list[np.ndarray], truths: list[np.ndarray]) -> dict[str, float]:
    assert len(predictions) == len(truths), f"{len(predictions)} predictions, {len(truths)} originals"
    return {metric: float(np.mean([min(fn(p, t), MAX_PSNR) for p, t in zip(predictions, truths, strict=True)]))
            for metric, fn in METRICS.items()}


def encode(out: Frames, half, colour, path: Path, codec_name: str, quality: str, crf: int | None) -> None:
    """What interpolate writes at ``--multi 2`` from ``half`` (the probed input) with the input's ``colour``."""
    codec = check_codec(codec_name, quality, crf, path)
    writer = VideoWriter(path, codec, crf, (half.height, half.width), half.rate * 2, half.time_base / 2,
                         colour=output_colour(colour))
    for image, pts in zip(out.images, out.pts, strict=True):
        writer.write(image, pts)
    writer.close()


def settings(codec_name: str, crfs: list[int] | None) -> list[tuple[str, str, int | None]]:
    """(row label, quality, crf) of each file to write: delivery at each of ``crfs`` (None: its default), master."""
    rows = []
    for quality in (DELIVERY, MASTER):
        if quality not in CODECS[codec_name]:
            continue
        values = crfs if crfs and quality == DELIVERY else [None]
        default = CODECS[codec_name][quality].default_crf
        rows += [(f"{codec_name} {quality}" + (f" crf {crf}" if crf is not None else "")
                  + (" (default)" if crf is not None and crf == default else ""), quality, crf) for crf in values]
    return rows


def bench_clip(clip: Path, project: Path, limit: int | None, codec_name: str, device: torch.device,
               crfs: list[int] | None = None) -> None:
    info = probe(clip)
    frames = list(decode(clip))[:limit]
    frames = frames[:len(frames) - (len(frames) + 1) % 2]  # odd: the last frame is a kept one
    truths = [frame.image for frame in frames[1::2]]
    threshold = load_params(project / PARAMS_FILE).extract.cut_threshold
    suffix = ".mkv" if codec_name == "ffv1" else ".mp4"
    rows: dict[str, dict[str, dict[str, float]]] = {metric: {"before encoding": {}} for metric in METRICS}
    sizes: dict[str, dict[str, int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "half.mkv"
        half_rate(frames, info, source)
        half = probe(source)
        for name, checkpoint in MODELS:
            model = load_checkpoint(project / checkpoint, AUTO).for_inference(device)
            out = Frames()
            with torch.inference_mode():
                interpolate_video(model, source, out, 2, 1.0, threshold, device, half.frames)
            for metric, value in mean_psnrs(out.images[1::2], truths).items():
                rows[metric]["before encoding"][name] = value
            for label, quality, crf in settings(codec_name, crfs):
                path = Path(tmp) / f"{name}-{quality}-{crf}{suffix}"
                encode(out, half, info.colour, path, codec_name, quality, crf)
                read = [frame.image for frame in decode(path)][1::2]
                for metric, value in mean_psnrs(read, truths).items():
                    rows[metric].setdefault(label, {})[name] = value
                sizes.setdefault(label, {})[name] = path.stat().st_size
    report(clip, info, len(frames), rows, sizes)


def report(clip: Path, info, count: int, rows: dict, sizes: dict) -> None:
    print(f"\n{clip.name}: {count} frames {info.width}x{info.height}, every other one dropped and interpolated "
          f"({count // 2} predictions per model)")
    for metric, table in rows.items():
        print(f"{metric:32s} {'pretrained':>10s} {'fine-tuned':>10s} {'gain dB':>8s} {'kept':>6s} {'kB pre/fine':>13s}")
        report_rows(table, sizes)


def report_rows(rows: dict, sizes: dict) -> None:
    base = None
    for label, psnrs in rows.items():
        gain = psnrs["fine-tuned"] - psnrs["pretrained"]
        base = gain if base is None else base
        kept = f"{gain / base:6.2f}" if base else f"{'-':>6s}"
        size = sizes.get(label)
        size_text = f"{size['pretrained'] / 1e3:.0f}/{size['fine-tuned'] / 1e3:.0f}" if size else ""
        print(f"{label:32s} {psnrs['pretrained']:10.3f} {psnrs['fine-tuned']:10.3f} {gain:+8.3f} {kept} "
              f"{size_text:>13s}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("project", type=Path, help="project folder with params.yaml and both checkpoints")
    parser.add_argument("clips", type=Path, nargs="+", help="videos to measure on (e.g. the test footage)")
    parser.add_argument("--frames", type=int, help="only the first N frames of each clip")
    parser.add_argument("--codec", default="h264", choices=list(CODECS), help="encoder (default h264)")
    parser.add_argument("--crfs", type=lambda text: [int(v) for v in text.split(",")],
                        help="delivery CRFs to compare, comma-separated (default: the codec's default)")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    for clip in args.clips:
        bench_clip(clip, args.project, args.frames, args.codec, device, args.crfs)


if __name__ == "__main__":
    main()
