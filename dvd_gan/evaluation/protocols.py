"""Named evaluation protocols: every parameter an FVD depends on, fixed at once, with a
fingerprint that says whether two numbers were measured the same way.

FVD moves with clip length, frame stride, where clips start, resizing, the number of clips
and the I3D input resize; a protocol fixes all of them. Presets:

- `dvd_gan`: this project's protocol. Clips as long as the videos given (a workdir: the
  config's frames); real clips from the middle of each video (the eval pipeline's centre
  clips), generated ones from the start; I3D input resized as the FVD reference does.
- `fvd_16f`: the reference of Unterthiner et al. (google-research/frechet_video_distance):
  the first 16 frames, TF1 bilinear resize straight to 224x224, values in [-1, 1]. The
  reference takes whatever videos it is given, so the count is that of the fake videos.
- `fvd2048_16f`, `fvd2048_128f`, `fvd2048_128f_subsample8f`: StyleGAN-V's
  (src/metrics/metric_main.py, frechet_video_distance.py, training/dataset.py): 2048 real
  and 2048 generated clips; 16 consecutive frames, 128, or 16 taking every 8th frame;
  real clips start at a random frame of each of the first 2048 videos (in file-name order)
  that holds frames * stride frames (shorter ones are dropped), generated clips at frame 0;
  frames go to I3D at their stored size, which its TorchScript detector resizes to 224
  (`resize=True`; we read it as PyTorch's bilinear interpolation without aligned corners,
  i.e. half-pixel centres, which is all the StyleGAN-V module says differs from the TF
  reference).
"""

import dataclasses
import functools
import hashlib
import json
import os

CLIP_STARTS = ("first", "centre", "random")
SUBSETS = ("first", "random")
I3D_RESIZES = ("tf1_bilinear", "half_pixel_bilinear")
DEFAULT_GENERATED_VIDEOS = 2048


@dataclasses.dataclass(frozen=True)
class Protocol:
    """How clips are taken from two sources of videos and fed to I3D.

    num_frames: frames per clip; None keeps each video's own length (all must agree).
    frame_stride: a clip takes every `frame_stride`-th frame.
    num_videos: clips per side; None: as many as the fake source holds (a generator:
        DEFAULT_GENERATED_VIDEOS), the same number of real ones.
    real_clip_start, fake_clip_start: where a clip starts in a longer video: 'first' frame,
        'centre' (the middle clip), or 'random' (seeded by the run's seed).
    subset: which videos when a source holds more than needed: the 'first' in name order
        (the same for every run) or a seeded 'random' choice (a new draw per run).
    resolution: frames resized (short side) and centre-cropped to this square size before
        I3D; None keeps their size.
    i3d_resize: how frames are resized to I3D's 224x224 ('tf1_bilinear': TF1's
        resize_bilinear, no half-pixel centres; 'half_pixel_bilinear').
    """

    num_frames: int | None = None
    frame_stride: int = 1
    num_videos: int | None = None
    real_clip_start: str = "centre"
    fake_clip_start: str = "first"
    subset: str = "first"
    resolution: int | None = None
    i3d_resize: str = "tf1_bilinear"

    def __post_init__(self):
        for name, valid in (
            ("real_clip_start", CLIP_STARTS),
            ("fake_clip_start", CLIP_STARTS),
            ("subset", SUBSETS),
            ("i3d_resize", I3D_RESIZES),
        ):
            if getattr(self, name) not in valid:
                raise ValueError(f"{name}={getattr(self, name)!r}; choose from {valid}.")
        for name in ("num_frames", "frame_stride", "num_videos", "resolution"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be positive; got {value}.")

    def required_frames(self, num_frames: int) -> int:
        """Frames a video needs for a clip of `num_frames` (StyleGAN-V's rule: frames times
        stride, so every start a random clip may take is one a real video has)."""
        return num_frames * self.frame_stride

    def seeded(self, side: str) -> bool:
        """Whether the clips of `side` ('real' or 'fake') depend on the run's seed."""
        start = self.real_clip_start if side == "real" else self.fake_clip_start
        return start == "random" or self.subset == "random"


# StyleGAN-V's clip sampling and detector resize, shared by its three FVD metrics.
_STYLEGAN_V = dict(
    num_videos=2048,
    real_clip_start="random",
    fake_clip_start="first",
    i3d_resize="half_pixel_bilinear",
)
PRESETS = {
    "dvd_gan": Protocol(),
    "fvd_16f": Protocol(num_frames=16, real_clip_start="first", fake_clip_start="first"),
    "fvd2048_16f": Protocol(num_frames=16, **_STYLEGAN_V),
    "fvd2048_128f": Protocol(num_frames=128, **_STYLEGAN_V),
    "fvd2048_128f_subsample8f": Protocol(num_frames=16, frame_stride=8, **_STYLEGAN_V),
}


def resolve(name: str, **overrides) -> Protocol:
    """Preset `name` with the given fields replaced (None values are ignored)."""
    if name not in PRESETS:
        raise ValueError(f"Unknown protocol {name!r}; choose from {', '.join(PRESETS)}.")
    fields = {k: v for k, v in overrides.items() if v is not None}
    unknown = sorted(set(fields) - {f.name for f in dataclasses.fields(Protocol)})
    if unknown:
        raise ValueError(f"Protocol has no field {unknown}.")
    return dataclasses.replace(PRESETS[name], **fields)


@functools.cache
def file_digest(path: str) -> str:
    """sha1 of a file's bytes (the I3D weights: a fingerprint names the exact network)."""
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(protocol: Protocol, weights_path: str) -> str:
    """16 hex digits of sha1 over the protocol's parameters and the I3D weights file's
    contents: equal exactly when both are (the protocol's name plays no part)."""
    parameters = dataclasses.asdict(protocol)
    text = json.dumps({"parameters": parameters, "i3d_weights": file_digest(weights_path)})
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def describe(name: str, protocol: Protocol, weights_path: str) -> dict:
    """The JSON record of a protocol: its name, every parameter, the weights file and the
    fingerprint."""
    return {
        "name": name,
        **dataclasses.asdict(protocol),
        "i3d_weights": os.path.basename(weights_path),
        "fingerprint": fingerprint(protocol, weights_path),
    }
