"""The Kinetics builder on a small download made here from real MP4 files."""

import collections
import csv
import os
import pathlib

import numpy as np
import pytest
import tensorflow_datasets as tfds

from dvd_gan.data import kinetics
from dvd_gan.data.video_io import write_video

CLASSES = ["abseiling", "juggling balls", "zumba"]

# video id suffix -> (split folder, class, layout, size (h, w), fps, frames, colour)
VIDEOS = {
    "aaa": ("train", "abseiling", "flat", (48, 64), 30, 40, (200, 40, 40)),
    "bbb": ("train", "abseiling", "class", (60, 80), 25, 30, (40, 200, 40)),
    "ccc": ("train", "juggling balls", "class", (64, 48), 15, 20, (40, 40, 200)),
    "ddd": ("train", "zumba", "corrupt", (48, 64), 25, 30, (0, 0, 0)),
    "eee": ("train", "zumba", "missing", (48, 64), 25, 30, (0, 0, 0)),
    "fff": ("train", "juggling balls", "flat", (48, 64), 25, 5, (90, 90, 90)),
    "ggg": ("val", "zumba", "flat", (72, 96), 24, 24, (220, 220, 40)),
    "hhh": ("val", "abseiling", "class", (48, 64), 25, 25, (40, 220, 220)),
    "iii": ("test", "", "flat", (48, 64), 25, 20, (128, 30, 160)),
}


def _vid(key):
    return kinetics.video_id(f"yt{key}", "10", "20")


def make_download(root):
    """A Kinetics-style manual dir: annotations/*.csv plus train/val/test folders."""
    os.makedirs(os.path.join(root, "annotations"))
    rows = collections.defaultdict(list)
    for key, (split, label, layout, (h, w), fps, n, colour) in VIDEOS.items():
        rows[split].append(
            {"label": label, "youtube_id": f"yt{key}", "time_start": 10, "time_end": 20}
        )
        folder = (
            os.path.join(root, split, label) if layout == "class" else os.path.join(root, split)
        )
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, _vid(key) + ".mp4")
        if layout == "missing":
            continue
        if layout == "corrupt":
            with open(path, "wb") as f:
                f.write(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
            continue
        frames = np.empty((n, h, w, 3), np.uint8)
        frames[:] = colour
        write_video(path, frames, fps)
    for split, split_rows in rows.items():
        with open(os.path.join(root, "annotations", f"{split}.csv"), "w", newline="") as f:
            fields = ["label", "youtube_id", "time_start", "time_end", "split"]
            writer = csv.DictWriter(f, fields, extrasaction="ignore")
            writer.writeheader()
            for row in split_rows:
                writer.writerow({**row, "split": split})


@pytest.fixture(scope="module")
def download(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("kinetics_download"))
    make_download(root)
    return root


def _build(download, data_dir, **download_config):
    builder = tfds.builder(
        "kinetics600/64", data_dir=data_dir, file_format="array_record", num_workers=2
    )
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(
            manual_dir=download, try_download_gcs=False, **download_config
        )
    )
    return builder


@pytest.fixture(scope="module")
def built(download, tmp_path_factory):
    return _build(download, str(tmp_path_factory.mktemp("tfds_plain")))


def _examples(builder, split):
    """video id -> example, with the frames (variable-size, so a list) stacked."""
    return {
        ex["video_id"].decode(): {**ex, "video": np.stack(ex["video"])}
        for ex in builder.as_data_source(split)
    }


def test_build_counts_labels_and_sizes(built):
    assert built.info.features["label"].names == CLASSES
    counts = {split: info.num_examples for split, info in built.info.splits.items()}
    assert counts == {"train": 3, "validation": 2, "test": 1}

    train = _examples(built, "train")
    assert sorted(train) == sorted(_vid(k) for k in ("aaa", "bbb", "ccc"))
    for key in ("aaa", "bbb", "ccc", "ggg", "hhh", "iii"):
        split, label, _, (h, w), fps, n, colour = VIDEOS[key]
        example = _examples(built, {"train": "train", "val": "validation"}.get(split, split))[
            _vid(key)
        ]
        video = example["video"]
        assert min(video.shape[1:3]) == 64, (key, video.shape)
        assert video.shape[1:3] == (round(h * 64 / min(h, w)), round(w * 64 / min(h, w)))
        assert abs(len(video) - round(n / fps * 25)) <= 1, (key, len(video))  # resampled to 25 fps
        np.testing.assert_allclose(video.mean(axis=(0, 1, 2)), colour, atol=12)
        assert example["class_name"].decode() == label
        assert example["label"] == (CLASSES.index(label) if label else -1)


def test_skipped_videos_are_reported_by_reason(built):
    reports = kinetics.read_skip_reports(built.data_dir, built.info.splits)
    assert reports == {
        "train": collections.Counter(missing=1, corrupt=1, too_short=1),
        "validation": collections.Counter(),
        "test": collections.Counter(),
    }
    lines = (pathlib.Path(built.data_dir) / "skipped-train.tsv").read_text().splitlines()
    by_id = {line.split("\t")[0]: line.split("\t")[1] for line in lines}
    assert by_id == {_vid("ddd"): "corrupt", _vid("eee"): "missing", _vid("fff"): "too_short"}


def test_beam_build_equals_plain_build(built, download, tmp_path):
    from apache_beam.options.pipeline_options import PipelineOptions

    options = PipelineOptions(["--runner=DirectRunner", "--direct_num_workers=1"])
    beam_built = _build(download, str(tmp_path), beam_options=options)
    splits = built.info.splits
    assert kinetics.read_skip_reports(beam_built.data_dir, splits) == kinetics.read_skip_reports(
        built.data_dir, splits
    )
    for split in ("train", "validation", "test"):
        plain, beam = _examples(built, split), _examples(beam_built, split)
        assert sorted(plain) == sorted(beam), split
        for vid, example in plain.items():
            np.testing.assert_array_equal(example["video"], beam[vid]["video"])
            assert example["label"] == beam[vid]["label"]


def test_missing_annotations_give_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="annotation CSV"):
        _build(str(tmp_path), str(tmp_path / "out"))
