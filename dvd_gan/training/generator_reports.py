"""What the training loop reports about the EMA generator: sample grids and in-training
FVD, each computed with the standing BatchNorm statistics of the step it reports."""

import json

import jax
import ml_collections
import numpy as np
from absl import logging
from clu import metric_writers
from etils import epath
from jax.sharding import Mesh

from dvd_gan.data.pipeline import ClipPipeline
from dvd_gan.data.video_io import write_image, write_video
from dvd_gan.evaluation.features import I3DFeatures
from dvd_gan.generation import sampling, standing_stats
from dvd_gan.generation.evaluation import evaluate_generator, video_sampler
from dvd_gan.training.state import TrainState

EVAL_METRICS = ("fvd", "diversity", "motion")


class GeneratorReports:
    """`write_samples(state, step)`: `samples/step_<step>.gif|png` and TensorBoard images
    of a grid from fixed z (and, for DVD-GAN-FP, fixed held-out conditioning frames), so
    grids of different steps compare. `evaluate(state, step)`: FVD, diversity and motion
    against the eval split, to `eval/step_<step>.json` and TensorBoard. Every process calls
    both (the work is split over every device); only the chief writes."""

    def __init__(
        self,
        config: ml_collections.ConfigDict,
        mesh: Mesh,
        workdir: epath.Path,
        writer: metric_writers.MetricWriter,
    ):
        self.config, self.mesh, self.workdir, self.writer = config, mesh, workdir, writer
        self.is_chief = jax.process_index() == 0
        self.sampler = sampling.make_sampler(config)
        self.sample_z, self.sample_labels = sampling.sample_inputs(
            config, config.train.num_samples, config.seed
        )
        self.sample_conditioning = None
        c = config.model.num_conditioning_frames
        if c:
            held_out = ClipPipeline(
                config.data,
                config.data.eval_split,
                batch_size=config.train.num_samples,
                train=False,
            )
            self.sample_conditioning = held_out.batch(0)["videos"][:, :c]  # in [-1, 1]
        self.standing = standing_stats.StandingStatistics(config, mesh)
        self.standing_conditioning = standing_stats.real_conditioning(config, mesh)
        self._variables = {}  # step -> G's variables with standing statistics
        self._extractor = self._eval_sampler = None  # built by the first evaluation

    def samples_due(self, step: int) -> bool:
        return step == self.config.train.num_steps or step % self.config.train.sample_every == 0

    def evaluation_due(self, step: int) -> bool:
        every = self.config.eval.every
        return every > 0 and (step % every == 0 or step == self.config.train.num_steps)

    def generator_variables(self, state: TrainState, step: int) -> dict:
        """G's variables for sampling the EMA weights at `step`: its standing statistics,
        computed once per step that samples or evaluates."""
        if step not in self._variables:
            self._variables = {
                step: self.standing(
                    state.ema_params,
                    state.generator,
                    standing_stats.standing_key(self.config, step),
                    self.standing_conditioning,
                )
            }
        return self._variables[step]

    def write_samples(self, state: TrainState, step: int):
        generated = np.asarray(
            self.sampler(
                state.ema_params,
                self.generator_variables(state, step),
                self.sample_z,
                self.sample_labels,
                self.sample_conditioning,
            )
        )
        if not self.is_chief:
            return
        grid = sampling.sample_grids(
            generated,
            np.asarray(self.sample_labels),
            self.config.model.num_classes,
            self.sample_conditioning,
        )
        directory = self.workdir / "samples"
        directory.mkdir(exist_ok=True)
        write_video(str(directory / f"step_{step:07d}.gif"), grid.video, fps=8)
        write_image(str(directory / f"step_{step:07d}.png"), grid.frames)
        self.writer.write_images(step, {"samples": grid.frames[None]})

    def evaluate(self, state: TrainState, step: int):
        config = self.config
        self._extractor = self._extractor or I3DFeatures(config.eval.batch_size)
        self._eval_sampler = self._eval_sampler or video_sampler(config, self.mesh)
        result = evaluate_generator(
            config,
            state.ema_params,
            self.generator_variables(state, step),
            metrics=EVAL_METRICS,
            num_videos=config.eval.num_videos,
            split=config.data.eval_split,
            extractor=self._extractor,
            seed=config.seed,
            sampler=self._eval_sampler,
        )
        logging.info("Step %d: FVD %.2f (%d videos)", step, result["fvd"], config.eval.num_videos)
        if self.is_chief:
            (self.workdir / "eval").mkdir(exist_ok=True)
            (self.workdir / "eval" / f"step_{step:07d}.json").write_text(
                json.dumps(result, indent=2)
            )
            self.writer.write_scalars(step, {f"eval/{name}": result[name] for name in EVAL_METRICS})
