"""The embedded Moving MNIST, the input pipeline, TFDS's UCF-101/BAIR through the pipeline,
and the prepare and benchmark commands."""

import hashlib
import json

import numpy as np
import pytest
import tensorflow_datasets as tfds
from conftest import free_port, run_module, start_worker, tiny_config, wait_for_workers

from dvd_gan.data import moving_mnist
from dvd_gan.data.pipeline import ClipPipeline


def _data_config(data_dir, **fields):
    config = tiny_config().data
    config.builder_config = "small"
    config.data_dir = data_dir
    for name, value in fields.items():
        setattr(config, name, value)
    return config


@pytest.fixture(scope="module")
def data_dir(mnist_data_dir):
    return mnist_data_dir


def test_moving_mnist_clips_contain_moving_digits(data_dir):
    source = tfds.builder("moving_mnist_local/small", data_dir=data_dir).as_data_source("train")
    assert len(source) == 512
    spreads = []
    for i in range(32):
        video = np.stack(source[i]["video"])[..., 0].astype(np.float64)  # [20, 64, 64]
        assert video.shape == (20, 64, 64)
        assert np.all(np.abs(np.diff(video, axis=0)).sum(axis=(1, 2)) > 0), "every frame moves"
        mass = video.sum(axis=(1, 2))
        spreads.append((mass.max() - mass.min()) / mass.max())
        assert video.max() > 200  # real, bright MNIST strokes
    # Two digits' ink changes only where they overlap (pixel-wise max), never by half.
    assert max(spreads) < 0.5


def test_moving_mnist_digit_mass_is_constant_over_time():
    images, _ = moving_mnist.load_digits()
    rng = np.random.default_rng(0)
    for _ in range(50):
        digits = images[rng.choice(len(images), 2, replace=False)]
        corners = np.stack([moving_mnist.trajectory(rng, 20) for _ in digits])
        alone = [
            moving_mnist.render(d[None], c[None]).sum(axis=(1, 2))
            for d, c in zip(digits, corners, strict=True)
        ]
        for mass in alone:
            assert np.all(mass == mass[0]) and mass[0] > 0  # never clipped at the border
        assert np.any(corners[0, 1:] != corners[0, :-1])  # and it moves
        both = moving_mnist.render(digits, corners).sum(axis=(1, 2))
        assert np.all(both <= alone[0] + alone[1]) and np.all(both >= np.maximum(*alone))


def test_moving_mnist_splits_use_disjoint_digits():
    _, labels = moving_mnist.load_digits()
    train, test = (
        moving_mnist.split_digits(labels, "train"),
        moving_mnist.split_digits(labels, "test"),
    )
    assert len(train) + len(test) == 5000 and not set(train) & set(test)
    assert set(labels[test]) == set(range(10))


def test_pipeline_batches_have_the_configured_shape_dtype_and_range(data_dir):
    config = _data_config(data_dir, num_frames=6, resolution=32, frame_stride=2)
    pipeline = ClipPipeline(config, "train", batch_size=5, train=True, seed=3)
    batch = next(pipeline.batches())
    assert batch["videos"].shape == (5, 6, 32, 32, 3) and batch["videos"].dtype == np.float32
    assert batch["videos"].min() >= -1.0 and batch["videos"].max() <= 1.0
    assert batch["videos"].min() == -1.0 and batch["videos"].max() > 0.5
    assert batch["labels"].shape == (5,) and batch["labels"].dtype == np.int32
    as_uint8 = ClipPipeline(config, "train", batch_size=5, train=True, seed=3, output_uint8=True)
    raw = as_uint8.batch(0)["videos"]
    assert raw.dtype == np.uint8
    np.testing.assert_allclose(raw / 127.5 - 1.0, batch["videos"], atol=1e-6)


def test_deterministic_mode_repeats_exactly(data_dir):
    config = _data_config(data_dir, random_flip=True)

    def pipeline(seed=0, process_index=0):
        return ClipPipeline(
            config,
            "train",
            batch_size=8,
            train=True,
            seed=seed,
            process_index=process_index,
            process_count=2,
        )

    first = pipeline()
    stream = first.batches(start=30)  # crosses the epoch boundary at 512 // (8 * 2) = 32
    batches = [next(stream) for _ in range(4)]
    again = pipeline()
    for i, batch in enumerate(batches):
        np.testing.assert_array_equal(batch["videos"], again.batch(30 + i)["videos"])
    assert not np.array_equal(batches[0]["videos"], pipeline(seed=1).batch(30)["videos"])
    assert not np.array_equal(batches[0]["videos"], pipeline(process_index=1).batch(30)["videos"])
    # Every example once per epoch, in a new order each epoch.
    epoch = [first._record_index(j) for j in range(512)]
    assert first.num_examples == 512 and sorted(epoch) == list(range(512))
    assert epoch != [first._record_index(j) for j in range(512, 1024)]


def test_the_training_stream_does_not_depend_on_the_number_of_processes(data_dir):
    """Global batch s is the same on 1, 2 or 4 processes (each process's rows put together),
    so a run resumed on another number of hosts continues the same stream."""
    config = _data_config(data_dir, random_flip=True)

    def global_batch(step, processes):
        parts = [
            ClipPipeline(
                config, "train", batch_size=8 // processes, train=True, seed=5,
                process_index=i, process_count=processes,
            ).batch(step)
            for i in range(processes)
        ]  # fmt: skip
        return {k: np.concatenate([part[k] for part in parts]) for k in parts[0]}

    for step in (0, 31, 32):  # 256 clips: batch 32 starts the second epoch
        one = global_batch(step, 1)
        for processes in (2, 4):
            for name, value in global_batch(step, processes).items():
                np.testing.assert_array_equal(value, one[name], err_msg=f"{name} {processes}")
    # Rows given explicitly (as the devices' layout may interleave them).
    interleaved = ClipPipeline(
        config, "train", batch_size=4, train=True, seed=5, process_count=2, rows=[1, 3, 5, 7]
    ).batch(31)
    np.testing.assert_array_equal(interleaved["videos"], global_batch(31, 1)["videos"][1::2])


def test_real_processes_read_the_stream_a_run_resumed_on_one_process_continues(data_dir, tmp_path):
    """The training loop's pipeline and batch layout in real processes: 2 processes read
    global batches 0-2; a run resumed at step 1 on 1 process reads the same batches 1-2."""
    coordinator = f"127.0.0.1:{free_port()}"
    worker = "data_stream_worker.py"
    two = [
        start_worker(
            worker, str(tmp_path / "two.npz"), data_dir, "2", str(i), "0", "3", coordinator
        )
        for i in range(2)
    ]
    one = start_worker(worker, str(tmp_path / "one.npz"), data_dir, "1", "0", "1", "2")
    wait_for_workers(one, *two)
    uninterrupted, resumed = np.load(tmp_path / "two.npz"), np.load(tmp_path / "one.npz")
    assert sorted(resumed.files) == ["1/labels", "1/videos", "2/labels", "2/videos"]
    assert uninterrupted["0/videos"].shape == (2, 8, 4, 16, 16, 3)  # [d_steps, B, T, H, W, C]
    for name in resumed.files:
        np.testing.assert_array_equal(resumed[name], uninterrupted[name], err_msg=name)
    assert not np.array_equal(uninterrupted["0/videos"], uninterrupted["1/videos"])


def _clip_hashes(pipeline):
    return [
        hashlib.sha1(clip.tobytes()).hexdigest()
        for batch in pipeline.batches()
        for clip in batch["videos"]
    ]


def test_two_processes_read_disjoint_slices_that_cover_the_split(data_dir):
    config = _data_config(data_dir)
    whole = _clip_hashes(ClipPipeline(config, "test", batch_size=16, train=False))
    parts = [
        _clip_hashes(
            ClipPipeline(
                config, "test", batch_size=16, train=False, process_index=i, process_count=2
            )
        )
        for i in range(2)
    ]
    assert len(whole) == 128 and len(set(whole)) == 128
    assert len(parts[0]) == len(parts[1]) == 64
    assert not set(parts[0]) & set(parts[1])
    assert set(parts[0]) | set(parts[1]) == set(whole)


def test_unprepared_dataset_names_the_prepare_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="dvd_gan.data.prepare --dataset=moving_mnist"):
        ClipPipeline(_data_config(str(tmp_path)), "train", batch_size=2, train=True)
    with pytest.raises(ValueError, match="supports"):
        ClipPipeline(
            _data_config(str(tmp_path), dataset="imagenet"), "train", batch_size=2, train=True
        )


@pytest.mark.parametrize(
    "dataset,builder_config,num_frames,num_classes",
    [("ucf101", "ucf101_1_256", 16, 101), ("bair_robot_pushing_small", None, 16, 0)],
)
def test_tfds_video_datasets_through_the_pipeline(dataset, builder_config, num_frames, num_classes):
    config = _data_config(
        None,
        dataset=dataset,
        builder_config=builder_config,
        num_frames=num_frames,
        resolution=32,
        frame_stride=1,
    )
    with tfds.testing.mock_data(num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE):
        pipeline = ClipPipeline(config, "train", batch_size=4, train=True)
        batch = pipeline.batch(0)
    assert pipeline.num_classes == num_classes
    assert batch["videos"].shape == (4, num_frames, 32, 32, 3)
    assert batch["videos"].min() >= -1.0 and batch["videos"].max() <= 1.0
    assert np.all((batch["labels"] >= 0) & (batch["labels"] < max(num_classes, 1)))


def test_data_benchmark_command(data_dir):
    result = run_module(
        "dvd_gan.data.benchmark",
        "--config=configs/smoke.py",
        f"--config.data.data_dir={data_dir}",
        "--batches=3",
        "--warmup=1",
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["host_batch_size"] == 8 and report["clips_per_s"] > 0


@pytest.mark.parametrize(
    "name, default",
    [
        ("moving_mnist_local", "standard"),
        ("kinetics400", "128"),
        ("kinetics600", "128"),
        ("kinetics700", "128"),
    ],
)
def test_a_builder_without_a_config_gets_the_documented_default(name, default, tmp_path):
    import dvd_gan.data  # noqa: F401  (registers the builders)

    builder = tfds.builder(name, data_dir=str(tmp_path))
    assert builder.builder_config.name == default
