"""One process of a real multi-process evaluation, for test_evaluation.py.

    python tests/distributed_eval_worker.py OUT.json DATA_DIR STATS_DIR DEVICES NUM_PROCESSES
        PROCESS_ID [COORDINATOR]

Every process calls `evaluate_generator` together (generation and I3D features split over
every device of every process); process 0 writes the metrics of two calls (the first
computing the real statistics, the second reading them from STATS_DIR) and the pixel sum
of each generated video, in order.
"""

import json
import os
import sys

out, data_dir, stats_dir = sys.argv[1:4]
devices, num_processes, process_id = map(int, sys.argv[4:7])
coordinator = sys.argv[7] if len(sys.argv) > 7 else None
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests.conftest import tiny_config, xla_flags  # noqa: E402  (imports no JAX)

os.environ["XLA_FLAGS"] = xla_flags(devices)
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402

from dvd_gan import models, sharding  # noqa: E402
from dvd_gan.evaluation.features import I3DFeatures  # noqa: E402
from dvd_gan.generation.evaluation import (  # noqa: E402
    evaluate_generator,
    generate_videos,
    video_sampler,
)

NUM_VIDEOS = 10  # not a multiple of the batch of 4: the last batch is padded


def main():
    sharding.initialize_distributed(coordinator, num_processes, process_id, False)
    config = tiny_config(num_frames=4, num_classes=0)
    config.data.data_dir = data_dir
    config.eval.batch_size = 4
    config.eval.stats_dir = stats_dir
    g_vars = jax.jit(lambda key: models.init(config.model, key)[0])(jax.random.key(0))
    extractor = I3DFeatures(batch_size=4)
    results = [
        evaluate_generator(
            config,
            g_vars["params"],
            g_vars,
            metrics=("fvd", "fid", "is"),
            num_videos=NUM_VIDEOS,
            split="test",
            extractor=extractor,
        )
        for _ in range(2)
    ]
    videos, _ = generate_videos(
        config, video_sampler(config), g_vars["params"], g_vars, NUM_VIDEOS, 0
    )
    if jax.process_index() == 0:
        with open(out, "w") as f:
            json.dump({"metrics": results, "video_sums": videos.sum(axis=(1, 2, 3, 4)).tolist()}, f)


if __name__ == "__main__":
    main()
