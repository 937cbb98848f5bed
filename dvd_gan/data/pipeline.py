"""The input pipeline: clips of `num_frames` frames from a prepared TFDS dataset, per host.

Design: random access, so the data is a pure function of the step. Datasets are stored in
the `array_record` format, which TFDS reads by index (`as_data_source`).

Training reads one global stream, whatever the number of processes: position j is example
`perm_e[j mod N]` of epoch e = j // N, where perm_e is a fresh permutation per (seed, epoch)
of the whole split — every example once per epoch, in a new order each epoch, across all
files — and every random choice for position j (start frame, crop, flip) comes from a
generator seeded by (seed, j). Global batch s holds positions [s * G, (s + 1) * G) for a
global batch of G clips; each process reads only the rows of it that its devices hold. So
the batch at step s depends only on (seed, step): a resumed run sees exactly the data an
uninterrupted one would, on any number of hosts, with no state to save and nothing to
skip. Evaluation reads the split in stored order, each process its own slice
(`tfds.split_for_jax_process`).

Only the frames a clip uses are decoded, from the stored JPEG/PNG bytes, in a pool of
`num_workers` threads (Pillow releases the GIL while decoding and resizing), and
`prefetch_batches` batches are prepared ahead of the one being consumed.
"""

import collections
import concurrent.futures
import dataclasses
import io

import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

import dvd_gan.data  # noqa: F401  (registers our TFDS builders)
from dvd_gan.pixels import scale_to_unit_range


@dataclasses.dataclass(frozen=True)
class DatasetFields:
    """Where a dataset keeps its frames (a sequence of encoded images) and its label (used
    where the builder config has that feature: Moving MNIST labels only its one-digit clips)."""

    video: str
    label: str | None


DATASETS = {
    "kinetics400": DatasetFields("video", "label"),
    "kinetics600": DatasetFields("video", "label"),
    "kinetics700": DatasetFields("video", "label"),
    "moving_mnist_local": DatasetFields("video", "label"),
    "ucf101": DatasetFields("video", "label"),
    "bair_robot_pushing_small": DatasetFields("image_main", None),
}


def dataset_fields(name: str) -> DatasetFields:
    if name not in DATASETS:
        raise ValueError(f"Unknown dataset {name!r}; the pipeline supports {sorted(DATASETS)}.")
    return DATASETS[name]


def tfds_name(data_config: ml_collections.ConfigDict) -> str:
    """'name' or 'name/builder_config', as `tfds.builder` takes it."""
    dataset_fields(data_config.dataset)
    if data_config.builder_config:
        return f"{data_config.dataset}/{data_config.builder_config}"
    return data_config.dataset


def prepare_command(data_config: ml_collections.ConfigDict) -> str:
    command = f"python -m dvd_gan.data.prepare --dataset={tfds_name(data_config)}"
    if data_config.data_dir:
        command += f" --data_dir={data_config.data_dir}"
    return command


def open_source(data_config: ml_collections.ConfigDict, split: str):
    """(builder, random-access source of serialized examples) for a prepared split, or a
    clear error saying how to prepare the dataset."""
    builder = tfds.builder(tfds_name(data_config), data_dir=data_config.data_dir)
    try:
        source = builder.as_data_source(
            split, deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES
        )
    except Exception as e:
        if not builder.is_prepared():
            raise FileNotFoundError(
                f"Dataset {tfds_name(data_config)} is not prepared in {builder.data_dir}. "
                f"Prepare it with: {prepare_command(data_config)}"
            ) from e
        if builder.info.file_format != tfds.core.FileFormat.ARRAY_RECORD:
            raise ValueError(
                f"Dataset {tfds_name(data_config)} in {builder.data_dir} is stored as "
                f"{builder.info.file_format.value}, but the pipeline needs random access "
                f"(array_record). Rebuild it with: {prepare_command(data_config)}"
            ) from e
        raise
    return builder, source


def _decode_frame(encoded: bytes, size: int) -> Image.Image:
    image = Image.open(io.BytesIO(encoded))
    # JPEG can decode at 1/2, 1/4, 1/8 scale directly: far cheaper than a full decode and
    # a resize when the stored frames are much larger than the model's.
    image.draft("RGB", (size, size))
    return image.convert("RGB")


def resize_and_crop(image: Image.Image, size: int, top: float, left: float) -> np.ndarray:
    """Resize so the short side is `size`, then crop size x size at relative (top, left)."""
    width, height = image.size
    scale = size / min(width, height)
    new_width, new_height = max(size, round(width * scale)), max(size, round(height * scale))
    if (new_width, new_height) != (width, height):
        image = image.resize((new_width, new_height), Image.BILINEAR)
    y = round(top * (new_height - size))
    x = round(left * (new_width - size))
    return np.asarray(image.crop((x, y, x + size, y + size)))


class ClipPipeline:
    """Batches of clips from one split, for one process.

    `batch(s)` returns batch s as dict(videos=[B, T, H, W, 3], labels=int32 [B]); videos are
    float32 in [-1, 1], or uint8 in [0, 255] with `output_uint8` (4x less to copy to the
    devices; `scale_to_unit_range` converts there). `batches(start)` iterates from batch
    `start` with prefetching.

    With `train=True`: the global stream (module docstring), random start frame and crop,
    optional flip; this process's `batch_size` clips of each global batch of `batch_size *
    process_count` are the rows `rows` (default: block `process_index`; pass
    `sharding.process_rows(...)` to match the devices' layout).
    With `train=False`: the split in stored order, one pass, centre start frame and crop;
    this process reads its own slice of the split.
    """

    def __init__(
        self,
        data_config: ml_collections.ConfigDict,
        split: str,
        *,
        batch_size: int,
        train: bool,
        seed: int = 0,
        process_index: int = 0,
        process_count: int = 1,
        rows: list[int] | None = None,
        output_uint8: bool = False,
    ):
        self.config = data_config
        self.fields = dataset_fields(data_config.dataset)
        self.batch_size = batch_size
        self.train = train
        self.seed = seed
        self.output_uint8 = output_uint8
        self.global_batch_size = batch_size * process_count if train else batch_size
        if not train:  # each process reads its own slice, in order
            rows = range(batch_size)
        elif rows is None:
            rows = range(process_index * batch_size, (process_index + 1) * batch_size)
        self.rows = list(rows)
        if train and (len(self.rows) != batch_size or max(self.rows) >= self.global_batch_size):
            raise ValueError(
                f"rows {self.rows} must be {batch_size} rows of a global batch of "
                f"{self.global_batch_size}."
            )
        self.split = split
        if not train:
            self.split = tfds.split_for_jax_process(
                split, process_index=process_index, process_count=process_count
            )
        builder, self.source = open_source(data_config, self.split)
        if len(self.source) == 0:
            raise ValueError(f"Split {self.split!r} of {tfds_name(data_config)} is empty.")
        features = builder.info.features
        self.label_field = self.fields.label if self.fields.label in features else None
        self.num_classes = features[self.label_field].num_classes if self.label_field else 0
        self.num_examples = len(self.source)
        self._permutations = {}

    # -- which example sits at stream position j, and its random choices

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch not in self._permutations:
            if len(self._permutations) >= 2:  # two epochs are live at an epoch boundary
                self._permutations.pop(min(self._permutations))
            rng = np.random.default_rng((self.seed, epoch, 0x5EED))
            self._permutations[epoch] = rng.permutation(self.num_examples)
        return self._permutations[epoch]

    def _record_index(self, position: int) -> int:
        if not self.train:
            return position % self.num_examples
        epoch, offset = divmod(position, self.num_examples)
        return int(self._permutation(epoch)[offset])

    def example(self, position: int) -> tuple[np.ndarray, int]:
        """Clip uint8 [T, H, W, 3] and label of stream position `position`."""
        record = tf.train.Example.FromString(self.source[self._record_index(position)])
        features = record.features.feature
        encoded = features[self.fields.video].bytes_list.value
        label = int(features[self.label_field].int64_list.value[0]) if self.label_field else 0
        num_frames, stride = self.config.num_frames, self.config.frame_stride
        span = (num_frames - 1) * stride + 1
        rng = np.random.default_rng((self.seed, position))
        if self.train:
            start = int(rng.integers(0, max(len(encoded) - span, 0) + 1))
            top, left = rng.random(2)
            flip = self.config.random_flip and rng.random() < 0.5
        else:
            start, (top, left), flip = max(len(encoded) - span, 0) // 2, (0.5, 0.5), False
        # Clips shorter than the span repeat their last frame.
        index = np.minimum(start + stride * np.arange(num_frames), len(encoded) - 1)
        size = self.config.resolution
        frames = np.stack(
            [resize_and_crop(_decode_frame(encoded[i], size), size, top, left) for i in index]
        )
        if flip:
            frames = frames[:, :, ::-1]
        return frames, label

    # -- batches

    def _positions(self, batch_index: int) -> list[int]:
        return [batch_index * self.global_batch_size + row for row in self.rows]

    def _collate(self, examples) -> dict[str, np.ndarray]:
        videos = np.stack([clip for clip, _ in examples])
        labels = np.array([label for _, label in examples], np.int32)
        return {
            "videos": videos if self.output_uint8 else scale_to_unit_range(videos),
            "labels": labels,
        }

    def batch(self, batch_index: int) -> dict[str, np.ndarray]:
        return self._collate([self.example(j) for j in self._positions(batch_index)])

    def batches(self, start: int = 0):
        """Batches start, start + 1, ... (endless when training; one pass otherwise, the last
        batch possibly smaller), decoded ahead by a thread pool."""
        stop = None if self.train else -(-self.num_examples // self.batch_size)
        workers = max(1, self.config.num_workers)
        with concurrent.futures.ThreadPoolExecutor(workers, "clip_decode") as pool:
            pending = collections.deque()
            next_batch = start
            while True:
                while len(pending) < max(1, self.config.prefetch_batches) and (
                    stop is None or next_batch < stop
                ):
                    positions = self._positions(next_batch)
                    if stop is not None:
                        positions = [j for j in positions if j < self.num_examples]
                    pending.append([pool.submit(self.example, j) for j in positions])
                    next_batch += 1
                if not pending:
                    return
                yield self._collate([future.result() for future in pending.popleft()])
