"""TFDS builders `kinetics400`, `kinetics600`, `kinetics700` for a local Kinetics download.

Expected layout under the manual directory (docs/design.md, section 3):

    annotations/{train,val,test}.csv   label,youtube_id,time_start,time_end,split
    {train,val,test}/                  {youtube_id}_{time_start:06d}_{time_end:06d}.mp4
                                       flat, or inside per-class folders

Every video is decoded with PyAV, resampled to 25 fps and resized so its short side is the
config's size (64, 128 or 256), and stored as JPEG frames with its label, class name and
video id; the TFDS splits are train, validation and test. A video that is missing,
unreadable, corrupt or too short is skipped and counted by reason; the build never stops
for one bad file. The skipped videos are listed in `skipped-<split>.tsv*` beside the data
and the counts are logged at the end of each split (and printed by
`python -m dvd_gan.data.prepare`).

Two ways to build: plainly, decoding in `num_workers` local processes, or with Apache Beam
(`pip install dvd-gan[beam]`; `tfds build ... --beam_pipeline_options=...` or
`prepare --beam_pipeline_options=...`), on the DirectRunner locally or Dataflow, Flink or
Spark at scale. Both produce the same dataset.
"""

import collections
import concurrent.futures
import csv
import dataclasses
import io
import multiprocessing
import os

import tensorflow_datasets as tfds
from absl import logging
from etils import epath
from PIL import Image

from dvd_gan.data.video_io import VideoError, decode_video
from dvd_gan.storage import files_under

# TFDS split -> name of its annotation CSV and its video folder.
SPLITS = {"train": "train", "validation": "val", "test": "test"}
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov")
SKIP_REASONS = ("missing", "unreadable", "corrupt", "too_short")


@dataclasses.dataclass
class KineticsConfig(tfds.core.BuilderConfig):
    short_side: int = 128  # stored frames' shorter side
    fps: float = 25.0  # frames are resampled to this rate
    min_frames: int = 16  # shorter videos are skipped
    jpeg_quality: int = 90


@dataclasses.dataclass(frozen=True)
class VideoRecord:
    """One row of an annotation CSV and where its file is (None: not found)."""

    video_id: str
    class_name: str
    path: str | None


@dataclasses.dataclass(frozen=True)
class Skipped:
    video_id: str
    reason: str
    detail: str


def video_id(youtube_id: str, time_start: str, time_end: str) -> str:
    return f"{youtube_id}_{int(float(time_start)):06d}_{int(float(time_end)):06d}"


def index_videos(folder: str) -> dict[str, str]:
    """Video id (file name without extension) -> path, for a flat or per-class folder."""
    found = {}
    for path in files_under(folder):
        if path.suffix.lower() in VIDEO_EXTENSIONS:
            found.setdefault(path.stem, os.fspath(path))
    return found


def read_annotations(csv_path: str, folder: str) -> list[VideoRecord]:
    videos = index_videos(folder) if epath.Path(folder).is_dir() else {}
    with epath.Path(csv_path).open() as f:
        rows = list(csv.DictReader(f))
    records = []
    for row in rows:
        vid = video_id(row["youtube_id"], row["time_start"], row["time_end"])
        records.append(VideoRecord(vid, (row.get("label") or "").strip(), videos.get(vid)))
    return records


def load_example(record: VideoRecord, config: KineticsConfig, class_names: list[str]):
    """(video_id, example) for a usable video, else a `Skipped`. Never raises for bad files."""
    if record.path is None:
        return Skipped(record.video_id, "missing", "no video file for this annotation row")
    try:
        frames = decode_video(record.path, config.fps, config.short_side)
    except VideoError as e:
        return Skipped(record.video_id, e.reason, e.detail)
    if len(frames) < config.min_frames:
        detail = f"{len(frames)} frames at {config.fps} fps < min_frames={config.min_frames}"
        return Skipped(record.video_id, "too_short", detail)
    encoded = []
    for frame in frames:
        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, format="JPEG", quality=config.jpeg_quality)
        encoded.append(buffer.getvalue())
    label = class_names.index(record.class_name) if record.class_name in class_names else -1
    return record.video_id, {
        "video": encoded,
        "label": label,
        "class_name": record.class_name,
        "video_id": record.video_id,
    }


def write_skip_report(path: str, skipped: list[Skipped]):
    with epath.Path(path).open("w") as f:
        for item in skipped:
            f.write(f"{item.video_id}\t{item.reason}\t{item.detail}\n")


def read_skip_reports(data_dir: str, splits) -> dict[str, collections.Counter]:
    """Split -> Counter of skip reasons, from the reports a build left in `data_dir` (the
    plain build writes one file per split, Beam one per shard and none for an empty one)."""
    counts = {split: collections.Counter() for split in splits}
    for split in counts:
        for path in epath.Path(data_dir).glob(f"skipped-{split}*.tsv"):
            with path.open() as f:
                counts[split].update(line.split("\t")[1] for line in f if line.strip())
    return counts


def _beam_build(records, config, class_names, report_prefix):
    """The Beam version of the split generator: decoding fans out over the workers; the
    skipped videos go to a sharded report and to Beam counters."""
    import apache_beam as beam

    class LoadExample(beam.DoFn):
        def __init__(self, config, class_names):
            self._config, self._class_names = config, class_names

        def process(self, record):
            result = load_example(record, self._config, self._class_names)
            if isinstance(result, Skipped):
                beam.metrics.Metrics.counter("kinetics", f"skipped_{result.reason}").inc()
                yield beam.pvalue.TaggedOutput("skipped", result)
            else:
                yield result

    class BuildSplit(beam.PTransform):
        def expand(self, pipeline):
            loaded = (
                pipeline
                | "Records" >> beam.Create(records)
                | "Load"
                >> beam.ParDo(LoadExample(config, class_names)).with_outputs(
                    "skipped", main="examples"
                )
            )
            _ = (
                loaded.skipped
                | "Format" >> beam.Map(lambda s: f"{s.video_id}\t{s.reason}\t{s.detail}")
                | "Report" >> beam.io.WriteToText(report_prefix, file_name_suffix=".tsv")
            )
            return loaded.examples

    return BuildSplit()


class _Kinetics(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Kinetics from a local download, as JPEG frames at 25 fps."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    BUILDER_CONFIGS = [
        KineticsConfig(name=str(size), short_side=size, description=f"Short side {size}.")
        for size in (64, 128, 256)
    ]
    DEFAULT_BUILDER_CONFIG_NAME = "128"
    MANUAL_DOWNLOAD_INSTRUCTIONS = __doc__

    def __init__(self, *, num_workers: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self._num_workers = num_workers or os.cpu_count() or 1
        self._use_beam = False

    def _info(self):
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "video": tfds.features.Video((None, None, None, 3), encoding_format="jpeg"),
                    "label": tfds.features.ClassLabel(),  # -1 where the CSV has no label
                    "class_name": tfds.features.Text(),
                    "video_id": tfds.features.Text(),
                }
            ),
            description=__doc__,
            homepage="https://github.com/cvdfoundation/kinetics-dataset",
        )

    def _download_and_prepare(self, dl_manager, download_config):
        self._use_beam = bool(download_config.beam_runner or download_config.beam_options)
        return super()._download_and_prepare(dl_manager, download_config)

    def _split_generators(self, dl_manager):
        root = dl_manager.manual_dir
        available = {
            split: read_annotations(
                os.path.join(root, "annotations", f"{name}.csv"), os.path.join(root, name)
            )
            for split, name in SPLITS.items()
            if epath.Path(root, "annotations", f"{name}.csv").exists()
        }
        if not available:
            raise FileNotFoundError(
                f"No annotation CSV under {root}/annotations; expected "
                f"{', '.join(f'{n}.csv' for n in SPLITS.values())}.\n{__doc__}"
            )
        class_names = sorted(
            {r.class_name for records in available.values() for r in records if r.class_name}
        )
        self.info.features["label"].names = class_names
        return {
            split: self._generate_examples(split, records, class_names)
            for split, records in available.items()
        }

    def _generate_examples(self, split, records, class_names):
        config = self.builder_config
        if self._use_beam:
            return _beam_build(
                records, config, class_names, os.path.join(self.data_dir, f"skipped-{split}")
            )
        return self._generate_locally(split, records, class_names)

    def _generate_locally(self, split, records, class_names):
        config = self.builder_config
        skipped = []
        if self._num_workers > 1:
            # 'spawn': forking a process that has loaded TensorFlow can deadlock.
            context = multiprocessing.get_context("spawn")
            pool = concurrent.futures.ProcessPoolExecutor(self._num_workers, mp_context=context)
            results = pool.map(
                load_example,
                records,
                [config] * len(records),
                [class_names] * len(records),
                chunksize=4,
            )
        else:
            pool = None
            results = (load_example(r, config, class_names) for r in records)
        try:
            for result in results:
                if isinstance(result, Skipped):
                    skipped.append(result)
                else:
                    yield result
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
        write_skip_report(os.path.join(self.data_dir, f"skipped-{split}.tsv"), skipped)
        counts = collections.Counter(s.reason for s in skipped)
        logging.info(
            "%s/%s: kept %d of %d videos; skipped %s",
            self.name,
            split,
            len(records) - len(skipped),
            len(records),
            dict(counts) or "none",
        )


class Kinetics400(_Kinetics):
    """Kinetics-400 from a local download."""


class Kinetics600(_Kinetics):
    """Kinetics-600 from a local download."""


class Kinetics700(_Kinetics):
    """Kinetics-700 from a local download."""
