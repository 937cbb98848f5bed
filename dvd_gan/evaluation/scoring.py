"""Scores one source of videos against another under a named protocol, over one or more
runs: clips taken as the protocol says, I3D features streamed batch by batch (clips are
kept in memory only for the metrics that need the pixels), real features cached by the
protocol's fingerprint and the real source's identity, each metric's mean and spread over
runs."""

import dataclasses
import hashlib
import json

import numpy as np
from etils import epath

from dvd_gan.evaluation import features as features_lib
from dvd_gan.evaluation import i3d, pixel_statistics, video_metrics, video_sources
from dvd_gan.evaluation import protocols as protocols_lib
from dvd_gan.evaluation.progress import Progress

PIXEL_METRICS = ("c3d_is", *pixel_statistics.STATISTICS)


def _clip_features(clips, extractor, total: int | None, what: str, keep: bool) -> dict:
    """{'logits', 'pool'} of every clip `clips` yields (and 'videos' when `keep`), fed to
    I3D in batches, a progress line per batch."""
    progress = Progress(what, total) if total else None
    batch, parts, kept, done = [], [], [], 0

    def flush():
        nonlocal done
        videos = np.stack(batch)
        if extractor is not None:
            parts.append(extractor(videos, description=None))
        if keep:
            kept.append(videos)
        done += len(batch)
        batch.clear()
        if progress:
            progress.update(done)

    for clip in clips:
        batch.append(clip)
        if len(batch) == (extractor.batch_size if extractor else 64):
            flush()
    if batch:
        flush()
    out = {}
    if parts:
        out = {k: np.concatenate([p[k] for p in parts]) for k in ("logits", "pool")}
    if keep:
        out["videos"] = np.concatenate(kept)
    return out


class SourceScorer:
    """Scores `fake` against `real` (sources from video_sources.open_source; `real` may be
    None for IS and pixel statistics of the fake clips alone)."""

    def __init__(
        self,
        real,
        fake,
        protocol_name: str,
        protocol: protocols_lib.Protocol,
        metrics: tuple[str, ...],
        extractor: "features_lib.I3DFeatures | None",
        c3d=None,
        cache_dir: str | None = None,
        specs: dict | None = None,
    ):
        self.real, self.fake, self.metrics = real, fake, metrics
        self.extractor, self.c3d = extractor, c3d
        self.cache_dir = epath.Path(cache_dir or features_lib.DEFAULT_STATS_DIR)
        self.specs = specs or {}
        self.protocol_name = protocol_name
        num_frames = video_sources.clip_length(fake, protocol)
        self.protocol = dataclasses.replace(protocol, num_frames=num_frames)
        self.keep_videos = bool(set(PIXEL_METRICS) & set(metrics))
        # Each side's clips per seed, or once (key None) where they do not depend on it.
        self._fake_runs, self._real_runs = {}, {}

    def _clips(self, source, side: str, seed: int, num_videos, skipped):
        return video_sources.iterate_clips(
            source, self.protocol, side, seed, self.protocol.num_frames, num_videos, skipped
        )

    def _fake(self, seed: int) -> tuple[dict, list]:
        skipped = []
        wanted = self.protocol.num_videos
        total = wanted or len(self.fake.names())
        clips = self._clips(self.fake, "fake", seed, wanted, skipped)
        features = _clip_features(
            clips,
            self.extractor if set(video_metrics.I3D_METRICS) & set(self.metrics) else None,
            total,
            f"fake clips ({self.fake.description})",
            self.keep_videos,
        )
        return features, skipped

    def _real(self, seed: int, num_videos: int, fingerprint: str) -> tuple[dict, list]:
        needs_features = bool(set(video_metrics.REAL_FEATURE_METRICS) & set(self.metrics))
        skipped = []

        def compute():
            clips = self._clips(self.real, "real", seed, num_videos, skipped)
            arrays = _clip_features(
                clips,
                self.extractor if needs_features else None,
                num_videos,
                f"real clips ({self.real.description})",
                self.keep_videos,
            )
            arrays["skipped"] = np.array(json.dumps(skipped))
            return arrays

        if self.keep_videos or not needs_features:
            arrays = compute()
        else:
            key = {
                "fingerprint": fingerprint,
                "source": self.real.identity(),
                "seed": seed if self.protocol.seeded("real") else None,
            }
            digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
            path = self.cache_dir / f"{fingerprint}-{digest}.npz"
            arrays = features_lib.cached_features(path, key, compute)
        return arrays, json.loads(str(arrays["skipped"]))

    def run(self, seed: int) -> dict:
        """One run's result (see `combine_runs`), every random choice from `seed`; a side's
        clips that do not depend on the seed are taken and scored once per scorer."""
        fake_key = seed if self.protocol.seeded("fake") else None
        if fake_key not in self._fake_runs:
            self._fake_runs[fake_key] = self._fake(seed)
        fake, fake_skipped = self._fake_runs[fake_key]
        count = len(next(iter(fake.values())))
        protocol = dataclasses.replace(self.protocol, num_videos=count)
        record = protocols_lib.describe(self.protocol_name, protocol, i3d.weights_path())
        real, real_skipped = {}, []
        if self.real is not None:
            real_key = (seed if self.protocol.seeded("real") else None, count)
            if real_key not in self._real_runs:
                self._real_runs[real_key] = self._real(seed, count, record["fingerprint"])
            real, real_skipped = self._real_runs[real_key]
        real_count = len(real["logits"] if "logits" in real else real.get("videos", ()))
        base = {**record, "frames": protocol.num_frames, "seed": seed, **self.specs}
        result, protocols = {}, {}
        if set(video_metrics.I3D_METRICS) & set(self.metrics):
            result.update(video_metrics.feature_metrics(self.metrics, fake, real or None))
            protocols.update(
                video_metrics.metric_protocols(self.metrics, base, protocol.i3d_resize, real_count)
            )
        if self.keep_videos:
            values, pixel_protocols = video_metrics.video_metrics(
                fake["videos"], self.metrics, base, real.get("videos"), self.c3d
            )
            result.update(values)
            protocols.update(pixel_protocols)
        result["clips"] = {"real": real_count, "fake": count}
        result["skipped"] = {"real": real_skipped, "fake": fake_skipped}
        result["protocol"] = protocols
        return result


def combine_runs(runs: list[dict], seed: int) -> dict:
    """One result from runs with seeds seed, seed + 1, ...: each metric the mean over runs,
    and with several runs `<metric>_runs_std` (standard deviation over runs, as StyleGAN-V
    reports it) and `runs` (each run's metrics and seed); the first run's clips, skipped
    videos and protocol, which records `num_runs`."""
    first = runs[0]
    names = [k for k, v in first.items() if isinstance(v, float)]
    result = {name: float(np.mean([r[name] for r in runs])) for name in names}
    # Metrics given per class or per frame: each entry the mean over runs.
    for name, value in first.items():
        if isinstance(value, list | dict) and name not in ("clips", "skipped", "protocol"):
            result[name] = _mean_over_runs([r[name] for r in runs])
    if len(runs) > 1:
        for name in names:
            if not name.endswith("_std"):  # a spread within a run (IS over splits) stays one
                result[f"{name}_runs_std"] = float(np.std([r[name] for r in runs]))
        result["runs"] = [
            {"seed": seed + i, **{name: run[name] for name in names}} for i, run in enumerate(runs)
        ]
    for key in ("clips", "skipped"):
        if key in first:
            result[key] = first[key]
    result["protocol"] = {
        name: {**protocol, "seed": seed, "num_runs": len(runs)}
        for name, protocol in first["protocol"].items()
    }
    return result


def _mean_over_runs(values: list):
    """The elementwise mean of runs' equal-shaped numbers, lists or dicts of them."""
    if isinstance(values[0], dict):
        return {key: _mean_over_runs([v[key] for v in values]) for key in values[0]}
    if isinstance(values[0], list):
        return [_mean_over_runs(list(parts)) for parts in zip(*values, strict=True)]
    return float(np.mean(values))


def score(scorer: SourceScorer, seed: int = 0, num_runs: int = 1) -> dict:
    """`scorer`'s runs with seeds seed .. seed + num_runs - 1, combined (`combine_runs`)."""
    if num_runs < 1:
        raise ValueError(f"num_runs must be >= 1; got {num_runs}.")
    return combine_runs([scorer.run(seed + i) for i in range(num_runs)], seed)
