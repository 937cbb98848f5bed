"""Where videos to score come from, and how a protocol takes clips from them.

A source is one of:
- a `.npz` file holding `videos`, uint8 [N, T, H, W, 3] (what `dvd_gan.sample` writes);
- a folder of video files (.mp4, .avi, .webm, .mkv, .mov, .gif), searched recursively,
  decoded with PyAV, every stored frame;
- a folder of clip folders, each holding one clip's frames as .png/.jpg in name order
  (StyleGAN-V's dataset layout), searched recursively;
- `tfds:NAME[/CONFIG]:SPLIT`, a prepared TFDS dataset of this project (e.g.
  `tfds:moving_mnist_local/standard:test`), its examples in stored order.

Videos are taken in name order (or a seeded random order, `subset='random'`) until enough
clips are found; a video that cannot be decoded or is too short for the clip is skipped,
counted and named, never fatal unless too few clips remain.
"""

import hashlib
import io
import json
import os
import sys
from collections.abc import Iterator

import numpy as np
from PIL import Image

from dvd_gan.data.video_io import VideoError, decode_video
from dvd_gan.evaluation.protocols import Protocol

VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".gif")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
SIDES = {"real": 0, "fake": 1}


class SourceError(ValueError):
    """A source that cannot be used at all (missing, empty, mixed, too few clips)."""


class Video:
    """An opened video: `length` frames; `frames(indices)` -> uint8 [len(indices), H, W, 3]."""

    def __init__(self, length: int, frames):
        self.length = length
        self.frames = frames


def _file_identity(paths: list[str], root: str) -> str:
    """sha1 over (relative path, size, mtime) of every file: changes when any file does."""
    entries = []
    for path in paths:
        stat = os.stat(path)
        entries.append((os.path.relpath(path, root), stat.st_size, stat.st_mtime_ns))
    return hashlib.sha1(json.dumps(entries).encode()).hexdigest()


class ArraySource:
    """Videos of an `.npz` file's `videos` array."""

    def __init__(self, path: str):
        with np.load(path) as data:
            if "videos" not in data:
                raise SourceError(
                    f"{path} has no 'videos' array (found {data.files}); save the videos "
                    f"as np.savez(path, videos=uint8 [N, T, H, W, 3])."
                )
            self.videos = data["videos"]
        if self.videos.dtype != np.uint8 or self.videos.ndim != 5 or self.videos.shape[-1] != 3:
            raise SourceError(
                f"{path}: 'videos' must be uint8 [N, T, H, W, 3]; got {self.videos.dtype} "
                f"{self.videos.shape}."
            )
        self.path = path
        self.description = f".npz {path}"

    def names(self) -> list[str]:
        return [f"videos[{i}]" for i in range(len(self.videos))]

    def open(self, index: int) -> Video:
        video = self.videos[index]
        return Video(len(video), lambda indices: video[indices])

    def identity(self) -> dict:
        return {"npz": os.path.abspath(self.path), "files": _file_identity([self.path], "/")}


class VideoFileSource:
    """Every video file under a folder, in path order."""

    def __init__(self, root: str, paths: list[str]):
        self.root, self.paths = root, paths
        self.description = f"folder of video files {root}"

    def names(self) -> list[str]:
        return [os.path.relpath(p, self.root) for p in self.paths]

    def open(self, index: int) -> Video:
        frames = decode_video(self.paths[index], fps=None)
        return Video(len(frames), lambda indices: frames[indices])

    def identity(self) -> dict:
        return {
            "folder": os.path.abspath(self.root),
            "files": _file_identity(self.paths, self.root),
        }


def _read_image(path: str) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, ValueError) as e:
        raise VideoError("corrupt", f"{path}: {e}") from e


class FrameFolderSource:
    """Every folder of frame images under a folder (one clip per folder), frames in name
    order; only the frames a clip uses are decoded."""

    def __init__(self, root: str, clips: list[tuple[str, list[str]]]):
        self.root, self.clips = root, clips
        self.description = f"folder of frame folders {root}"

    def names(self) -> list[str]:
        return [os.path.relpath(folder, self.root) for folder, _ in self.clips]

    def open(self, index: int) -> Video:
        frames = self.clips[index][1]
        return Video(
            len(frames), lambda indices: np.stack([_read_image(frames[i]) for i in indices])
        )

    def identity(self) -> dict:
        paths = [p for _, frames in self.clips for p in frames]
        return {"folder": os.path.abspath(self.root), "files": _file_identity(paths, self.root)}


class TfdsSource:
    """The examples of a prepared TFDS dataset split, in stored order."""

    def __init__(self, name: str, split: str, data_dir: str | None):
        import ml_collections
        import tensorflow as tf

        from dvd_gan.data import pipeline

        dataset, _, builder_config = name.partition("/")
        config = ml_collections.ConfigDict(
            {"dataset": dataset, "builder_config": builder_config, "data_dir": data_dir}
        )
        try:
            self.field = pipeline.dataset_fields(dataset).video
            builder, self.records = pipeline.open_source(config, split)
        except (FileNotFoundError, ValueError) as e:
            raise SourceError(str(e)) from e
        self.parse = tf.train.Example.FromString
        self.name, self.split, self.version = name, split, str(builder.info.version)
        self.data_dir = str(builder.data_dir)
        self.description = f"TFDS {name}:{split}"

    def names(self) -> list[str]:
        return [f"{self.split}[{i}]" for i in range(len(self.records))]

    def open(self, index: int) -> Video:
        encoded = self.parse(self.records[index]).features.feature[self.field].bytes_list.value

        def frames(indices):
            images = []
            for i in indices:
                with Image.open(io.BytesIO(encoded[i])) as image:
                    images.append(np.asarray(image.convert("RGB")))
            return np.stack(images)

        return Video(len(encoded), frames)

    def identity(self) -> dict:
        # The data dir too: two builds of a manually downloaded dataset (Kinetics) share a
        # version but not necessarily their videos.
        return {
            "tfds": self.name,
            "split": self.split,
            "version": self.version,
            "data_dir": self.data_dir,
        }


def _folder_source(root: str):
    videos, clip_frames = [], {}
    for directory, _, files in os.walk(root, followlinks=True):
        for file in files:
            extension = os.path.splitext(file)[1].lower()
            if extension in VIDEO_EXTENSIONS:
                videos.append(os.path.join(directory, file))
            elif extension in IMAGE_EXTENSIONS:
                clip_frames.setdefault(directory, []).append(os.path.join(directory, file))
    if videos and clip_frames:
        raise SourceError(
            f"{root} holds both video files ({len(videos)}) and folders of frames "
            f"({len(clip_frames)}); point at a folder holding one kind."
        )
    if videos:
        return VideoFileSource(root, sorted(videos))
    if clip_frames:
        return FrameFolderSource(root, [(d, sorted(f)) for d, f in sorted(clip_frames.items())])
    raise SourceError(
        f"{root} holds no videos: expected files ending in {', '.join(VIDEO_EXTENSIONS)}, or "
        f"folders of {', '.join(IMAGE_EXTENSIONS)} frames."
    )


def open_source(spec: str, data_dir: str | None = None):
    """The source a `--real`/`--fake` value names (see the module docstring)."""
    if spec.startswith("tfds:"):
        name, _, split = spec[len("tfds:") :].partition(":")
        if not name or not split:
            raise SourceError(f"{spec!r}: write a TFDS source as tfds:NAME[/CONFIG]:SPLIT.")
        return TfdsSource(name, split, data_dir)
    if not os.path.exists(spec):
        raise SourceError(f"{spec} does not exist: pass an .npz, a folder of videos, or tfds:.")
    if os.path.isdir(spec):
        return _folder_source(spec)
    if spec.endswith(".npz"):
        return ArraySource(spec)
    raise SourceError(f"{spec}: a file source must be an .npz of videos; pass its folder instead.")


def clip_length(source, protocol: Protocol, sample: int = 16) -> int:
    """The protocol's clip length; without one, the videos' own: an .npz's T, else the most
    common length of the first `sample` readable videos (a few broken or short files do
    not set it)."""
    if protocol.num_frames:
        return protocol.num_frames
    if isinstance(source, ArraySource):
        return source.videos.shape[1]
    lengths = []
    for index in range(len(source.names())):
        try:
            lengths.append(source.open(index).length)
        except VideoError:
            continue
        if len(lengths) == sample:
            break
    if not lengths:
        raise SourceError(f"No video of {source.description} can be decoded.")
    values, counts = np.unique(lengths, return_counts=True)
    return int(values[np.argmax(counts)])


def _start(length: int, span: int, how: str, rng: np.random.Generator) -> int:
    if how == "first":
        return 0
    if how == "centre":
        return (length - span) // 2
    return int(rng.integers(0, length - span + 1))


def _resize(frames: np.ndarray, size: int) -> np.ndarray:
    from dvd_gan.data.pipeline import resize_and_crop

    return np.stack([resize_and_crop(Image.fromarray(f), size, 0.5, 0.5) for f in frames])


def iterate_clips(
    source,
    protocol: Protocol,
    side: str,
    seed: int,
    num_frames: int,
    num_videos: int | None,
    skipped: list[dict],
) -> Iterator[np.ndarray]:
    """Clips uint8 [T, H, W, 3] of `source` under `protocol` for `side` ('real'/'fake'),
    `num_videos` of them (None: every usable video). Videos passed over are appended to
    `skipped` and reported on stderr; too few usable videos raise SourceError."""
    names = source.names()
    order = np.arange(len(names))
    if protocol.subset == "random":
        order = np.random.default_rng((seed, SIDES[side], 0)).permutation(len(names))
    how = protocol.real_clip_start if side == "real" else protocol.fake_clip_start
    stride, span = protocol.frame_stride, (num_frames - 1) * protocol.frame_stride + 1
    wanted = len(names) if num_videos is None else num_videos
    shape, taken = None, 0
    for index in order:
        if taken == wanted:
            break
        name = names[index]
        try:
            video = source.open(index)
            if video.length < protocol.required_frames(num_frames):
                raise VideoError(
                    "too_short",
                    f"{video.length} frames; the clip needs {protocol.required_frames(num_frames)}"
                    f" ({num_frames} frames, stride {stride})",
                )
            rng = np.random.default_rng((seed, SIDES[side], 1, int(index)))
            start = _start(video.length, span, how, rng)
            clip = np.asarray(video.frames(start + stride * np.arange(num_frames)))
        except VideoError as e:
            skipped.append({"name": name, "reason": e.reason, "detail": e.detail})
            print(f"skipped {side} video {name}: {e}", file=sys.stderr, flush=True)
            continue
        if protocol.resolution:
            clip = _resize(clip, protocol.resolution)
        if shape is None:
            shape = clip.shape
        elif clip.shape != shape:
            raise SourceError(
                f"{side} clips differ in size: {name} is {clip.shape[1:3]}, earlier ones "
                f"{shape[1:3]}; pass --resolution=N to resize every frame to N x N."
            )
        taken += 1
        yield clip
    if num_videos is not None and taken < num_videos:
        raise SourceError(
            f"{source.description} gave {taken} usable {side} clips of {num_frames} frames "
            f"(stride {stride}) out of {len(names)} videos, {len(skipped)} skipped; "
            f"{num_videos} were asked for. Lower --num_videos or add videos."
        )
    if taken == 0:
        raise SourceError(f"{source.description} gave no usable {side} clip.")
