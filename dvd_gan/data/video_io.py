"""Video files in and out with PyAV (its wheels bundle FFmpeg: no system ffmpeg needed)."""

import dataclasses
import io
import math
import os
from fractions import Fraction

import av
import numpy as np
from etils import epath
from PIL import Image

from dvd_gan.storage import is_remote


@dataclasses.dataclass
class VideoError(Exception):
    """A video that cannot be used. `reason` is one of 'missing', 'unreadable', 'corrupt',
    'too_short'; `detail` says what happened."""

    reason: str
    detail: str

    def __str__(self):
        return f"{self.reason}: {self.detail}"


def _output_size(width: int, height: int, short_side: int | None) -> tuple[int, int]:
    if short_side is None:
        return width, height
    scale = short_side / min(width, height)
    return max(short_side, round(width * scale)), max(short_side, round(height * scale))


def decode_video(path: str, fps: float | None = 25.0, short_side: int | None = None) -> np.ndarray:
    """Decodes `path` to uint8 frames [T, H, W, 3], resampled to `fps` (None: every stored
    frame, as evaluation takes them) and resized so that the shorter side is `short_side`
    (None: keep the size).

    Resampling keeps, for every output time k / fps, the last source frame shown at or
    before it; source frames no output time needs are never converted. Remote paths
    (gs://...) are read whole through the storage layer first. Raises VideoError.
    """
    if not epath.Path(path).exists():
        raise VideoError("missing", f"{path} does not exist")
    source = io.BytesIO(epath.Path(path).read_bytes()) if is_remote(path) else path
    try:
        container = av.open(source)
    except av.error.InvalidDataError as e:
        raise VideoError("corrupt", f"{path}: {e}") from e
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise VideoError("unreadable", f"{path}: {e}") from e
    with container:
        if not container.streams.video:
            raise VideoError("unreadable", f"{path} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        source_rate = float(stream.average_rate or stream.guessed_rate or fps or 25.0)
        frames, previous, previous_time = [], None, 0.0

        def emit_until(time_limit: float, frame):
            # Output slot k shows `frame` while k / fps < time_limit.
            converted = None
            while len(frames) / fps < time_limit - 1e-6:
                if converted is None:
                    width, height = _output_size(frame.width, frame.height, short_side)
                    converted = frame.reformat(
                        width=width, height=height, format="rgb24", interpolation="AREA"
                    ).to_ndarray()
                frames.append(converted)

        try:
            for index, frame in enumerate(container.decode(stream)):
                if fps is None:
                    width, height = _output_size(frame.width, frame.height, short_side)
                    frames.append(
                        frame.reformat(
                            width=width, height=height, format="rgb24", interpolation="AREA"
                        ).to_ndarray()
                    )
                    continue
                time = frame.time if frame.time is not None else index / source_rate
                if previous is not None:
                    emit_until(time, previous)
                previous, previous_time = frame, time
        except (av.error.FFmpegError, ValueError) as e:
            raise VideoError("corrupt", f"{path}: decoding failed: {e}") from e
        if previous is None and not frames:
            raise VideoError("corrupt", f"{path}: no frame could be decoded")
        if fps is not None:
            emit_until(previous_time + 1.0 / source_rate, previous)
    return np.stack(frames)


def write_video(path: str, frames: np.ndarray, fps: float = 25.0, codec: str = "libx264"):
    """Writes uint8 frames [T, H, W, 3] to `path`: an animated, looping GIF for .gif, else a
    video in `codec` (H.264 by default; sizes rounded down to even for its 4:2:0 chroma)."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(
            f"write_video needs uint8 [T, H, W, 3] frames; got {frames.dtype} {frames.shape}"
        )
    if path.lower().endswith(".gif"):
        _write_gif(path, frames, fps)
        return
    if codec == "libx264":
        frames = frames[:, : frames.shape[1] // 2 * 2, : frames.shape[2] // 2 * 2]
    # Encoded in memory and written whole, so that gs:// paths take the storage layer too.
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=_container_format(path)) as container:
        stream = container.add_stream(codec, rate=_fraction(fps))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            container.mux(stream.encode(video_frame))
        container.mux(stream.encode())
    epath.Path(path).write_bytes(buffer.getvalue())


def _container_format(path: str) -> str:
    extension = os.path.splitext(path)[1][1:].lower()
    formats = {"mp4": "mp4", "m4v": "mp4", "mov": "mov", "mkv": "matroska", "webm": "webm"}
    if extension not in formats:
        raise ValueError(f"Cannot write {path}: use one of .gif, .{', .'.join(formats)}.")
    return formats[extension]


def write_image(path: str, image: np.ndarray):
    """Writes a uint8 image [H, W, 3] (PNG, JPEG, ... by the extension); gs:// works too."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=os.path.splitext(path)[1][1:].upper() or "PNG")
    epath.Path(path).write_bytes(buffer.getvalue())


def _write_gif(path: str, frames: np.ndarray, fps: float):
    # Pillow rather than FFmpeg: FFmpeg's GIF encoder needs a palette that PyAV's scaler
    # cannot make, and its fixed 3-3-2 colours look poor; Pillow picks a palette per frame.
    images = [Image.fromarray(frame) for frame in frames]
    buffer = io.BytesIO()
    images[0].save(
        buffer,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=round(1000 / fps),
        loop=0,
    )
    epath.Path(path).write_bytes(buffer.getvalue())


def _fraction(fps: float):
    return Fraction(fps).limit_denominator(1001) if not math.isclose(fps, round(fps)) else int(fps)
