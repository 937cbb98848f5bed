"""Prepares a dataset for training: the TFDS build, in the random-access format the input
pipeline reads, with progress bars, a report of skipped videos and a summary.

    python -m dvd_gan.data.prepare --dataset=kinetics600/128 --manual_dir=/data/kinetics600 \\
        [--data_dir=gs://bucket/tfds] [--num_workers=32] \\
        [--beam_pipeline_options=runner=DirectRunner,direct_num_workers=16]
    python -m dvd_gan.data.prepare --dataset=moving_mnist_local     # embedded, no download
    python -m dvd_gan.data.prepare --dataset=ucf101/ucf101_1_256     # downloaded by TFDS
"""

import json
import os
import shutil
import sys
import tempfile

import tensorflow_datasets as tfds
from absl import app, flags
from etils import epath

from dvd_gan.command_line import fatal
from dvd_gan.data import kinetics
from dvd_gan.data.pipeline import dataset_fields
from dvd_gan.storage import copy_tree, files_under, is_remote

_DATASET = flags.DEFINE_string("dataset", None, "TFDS name[/config], e.g. kinetics600/128.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Where TFDS stores datasets (default ~).")
_MANUAL_DIR = flags.DEFINE_string("manual_dir", None, "A manual download (Kinetics).")
_STAGING_DIR = flags.DEFINE_string(
    "staging_dir",
    None,
    "With a gs:// --data_dir: where the dataset is built before it is uploaded (default: a "
    "temporary directory, removed after the upload).",
)
_NUM_WORKERS = flags.DEFINE_integer(
    "num_workers", None, "Local decoding processes for Kinetics (default: all cores)."
)
_BEAM_OPTIONS = flags.DEFINE_string(
    "beam_pipeline_options",
    None,
    "Build with Apache Beam: comma-separated options, e.g. runner=DirectRunner,"
    "direct_num_workers=8 (needs `pip install dvd-gan[beam]`).",
)


def _download_config():
    config = dict(manual_dir=_MANUAL_DIR.value, try_download_gcs=False)
    if _BEAM_OPTIONS.value:
        try:
            from apache_beam.options.pipeline_options import PipelineOptions
        except ImportError:
            sys.exit("--beam_pipeline_options needs Apache Beam: pip install 'dvd-gan[beam]'")
        options = [f"--{option}" for option in _BEAM_OPTIONS.value.split(",") if option]
        config["beam_options"] = PipelineOptions(options)
    return tfds.download.DownloadConfig(**config)


def _directory_size(path: str) -> int:
    return sum(file.stat().length for file in files_under(path))


def _build_and_upload(name: str, builder_kwargs: dict):
    """Builds `name` in a local staging directory, then copies it to the remote data dir.
    TFDS cannot write ArrayRecord files to gs:// itself (tensorflow/datasets#10981)."""
    if _BEAM_OPTIONS.value:
        fatal(
            "A Beam build cannot write ArrayRecord files to gs:// (tensorflow/datasets#10981): "
            "leave out --beam_pipeline_options to build locally and upload, or build with Beam "
            "into a local --data_dir=DIR and run this command again with the gs:// --data_dir "
            "and --staging_dir=DIR, which uploads what DIR holds."
        )
    remote_root = builder_kwargs["data_dir"]
    staging = _STAGING_DIR.value or tempfile.mkdtemp(prefix="dvd_gan_prepare_")
    local = tfds.builder(name, **{**builder_kwargs, "data_dir": staging})
    if not local.is_prepared():
        local.download_and_prepare(download_config=_download_config())
    relative = os.path.relpath(local.data_dir, staging)
    print(f"Uploading {local.data_dir} to {remote_root}/{relative}", flush=True)
    # The version directory's files first, its dataset_info.json last: TFDS counts a
    # dataset as prepared once that file is there, so an interrupted upload is redone.
    copy_tree(local.data_dir, epath.Path(remote_root) / relative, last=("dataset_info.json",))
    if not _STAGING_DIR.value:
        shutil.rmtree(staging, ignore_errors=True)
    return tfds.builder(name, **builder_kwargs)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    name = _DATASET.value
    try:
        dataset_fields(name.split("/")[0])
    except ValueError as e:
        fatal(str(e))
    builder_kwargs = dict(data_dir=_DATA_DIR.value, file_format="array_record")
    is_kinetics = name.startswith("kinetics")
    if is_kinetics:
        if not _MANUAL_DIR.value:
            sys.exit(f"{name} is built from your download: pass --manual_dir.\n{kinetics.__doc__}")
        if not os.path.isdir(_MANUAL_DIR.value) or not os.listdir(_MANUAL_DIR.value):
            fatal(
                f"--manual_dir={_MANUAL_DIR.value} does not exist or is empty: download "
                f"the videos and annotations into it (see docs/data.md)."
            )
        builder_kwargs["num_workers"] = _NUM_WORKERS.value
    builder = tfds.builder(name, **builder_kwargs)
    if builder.is_prepared():
        print(f"{name} is already prepared in {builder.data_dir}.")
    elif is_remote(builder.data_dir):
        builder = _build_and_upload(name, builder_kwargs)
    else:
        builder.download_and_prepare(download_config=_download_config())
    summary = {
        "dataset": name,
        "data_dir": builder.data_dir,
        "file_format": builder.info.file_format.value,
        "examples": {split: info.num_examples for split, info in builder.info.splits.items()},
        "size_bytes": _directory_size(builder.data_dir),
    }
    if is_kinetics:
        reports = kinetics.read_skip_reports(builder.data_dir, builder.info.splits)
        summary["skipped"] = {split: dict(counts) for split, counts in reports.items()}
        total = sum(sum(c.values()) for c in reports.values())
        print(f"Skipped {total} videos (listed in {builder.data_dir}/skipped-*.tsv):")
        for split, counts in reports.items():
            reasons = ", ".join(f"{n} {r}" for r, n in sorted(counts.items())) or "none"
            print(f"  {split}: {reasons}")
    print(json.dumps(summary))


if __name__ == "__main__":
    flags.mark_flag_as_required("dataset")
    app.run(main)
