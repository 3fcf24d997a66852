"""Observation checks, the official N1.5 image/state transforms, and action decoding."""

import logging
from functools import lru_cache

import cv2
import numpy as np
import torch

from gr00t_fast.model.config import Gr00tConfig
from gr00t_fast.model.inputs import ModelInputs
from gr00t_fast.policy.bounds import MAX_FRAME_PIXELS, RequestBounds
from gr00t_fast.policy.data_config import DataConfig
from gr00t_fast.policy import rotations
from gr00t_fast.policy.metadata import EmbodimentMetadata
from gr00t_fast.policy.transforms import check_widths, key_transforms
from gr00t_fast.model.tokenizer import MAX_INSTRUCTION_TOKENS, PromptTokenizer

log = logging.getLogger(__name__)

CROP_SCALE = 0.95
PIPELINES = ("isaac", "lerobot")
MAX_STATE_DEVIATION = 10.0  # |normalized state| beyond this (10x the training range) is refused: wrong units
STATE_WARNING_MARGIN = 0.25  # a measured state this far (share of the range) outside the statistics is warned about


def center_crop_box(height: int, width: int, scale: float = CROP_SCALE) -> tuple[int, int, int, int]:
    """(top, left, crop_h, crop_w) of Isaac's VideoCrop in eval mode (torchvision CenterCrop offsets)."""
    crop_h, crop_w = int(height * scale), int(width * scale)
    return int(round((height - crop_h) / 2.0)), int(round((width - crop_w) / 2.0)), crop_h, crop_w


@lru_cache(maxsize=32)
def _aa_taps(in_size: int, out_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Source indices (out, K) and float32 weights (out, K) of antialiased bilinear resampling.

    Term by term PyTorch 2.5's `_compute_indices_min_size_weights_aa` for float input (the version the
    official pipeline ran), including its float/double promotions; unused taps get weight 0.
    """
    f32 = np.float32
    scale = f32(in_size) / f32(out_size)
    support = f32(1.0 * float(scale)) if scale >= 1 else f32(1.0)
    invscale = f32(1.0 / float(scale)) if scale >= 1 else f32(1.0)
    rows = []
    for i in range(out_size):
        center = f32(float(scale) * (i + 0.5))
        xmin = max(int(float(f32(center - support)) + 0.5), 0)
        xsize = min(int(float(f32(center + support)) + 0.5), in_size) - xmin
        ws = []
        for j in range(xsize):
            x = abs(f32((float(f32(f32(j + xmin) - center)) + 0.5) * float(invscale)))
            ws.append(f32(1.0 - float(x)) if x < 1.0 else f32(0.0))
        total = f32(0.0)
        for w in ws:
            total = f32(total + w)
        rows.append((xmin, [f32(w / total) for w in ws] if total != 0 else ws))
    k = max(len(ws) for _, ws in rows)
    index = torch.tensor([[min(xmin + j, in_size - 1) for j in range(k)] for xmin, _ in rows], dtype=torch.long)
    weight = torch.tensor([[float(ws[j]) if j < len(ws) else 0.0 for j in range(k)] for _, ws in rows], dtype=torch.float32)
    return index, weight


def _resample(x: torch.Tensor, out_size: int) -> torch.Tensor:
    """One separable float32 pass along dim 0 (rows are contiguous, so each tap is a row gather).

    Upstream's CPU kernel accumulates `out = x0*w0; out += xj*wj` in float32, compiled to fused
    multiply-adds; `torch.addcmul` is that fused multiply-add bit for bit (checked in the tests).
    """
    index, weight = _aa_taps(x.shape[0], out_size)
    shape = (-1,) + (1,) * (x.ndim - 1)
    acc = x.index_select(0, index[:, 0]).mul_(weight[:, 0].view(shape))
    taps = torch.empty_like(acc)
    for j in range(1, index.shape[1]):
        acc.addcmul_(torch.index_select(x, 0, index[:, j], out=taps), weight[:, j].view(shape))
    return acc


def transform_frames(frames: np.ndarray, size: int) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, size, size) float32 SigLIP input in [-1, 1] on the host, bit-exact to Isaac +
    Eagle.

    /255 -> 95% center crop -> bilinear antialiased resize (horizontal pass, then vertical, as torch 2.5 CPU)
    -> (x*255) truncated to uint8 -> (u8 - 127.5) / 127.5. The crop is a slice taken before the float conversion.
    Recent torch's `interpolate(antialias=True)` rounds differently: 1-level differences on a few % of pixels.
    It runs on the host whatever the model's device (`Processor.pixel_values` moves the result): CUDA divides by a
    scalar as a multiply by its reciprocal, which moves pixels across a level's edge (measured on an H200: actions
    4.2e-3 off NVIDIA's, where the host gives 5e-7).
    """
    top, left, crop_h, crop_w = center_crop_box(frames.shape[1], frames.shape[2])
    # (W, N, H, C) contiguous, so every resampling tap gathers whole contiguous rows; OpenCV transposes the uint8
    # crops several times faster than a strided copy.
    crops = [cv2.transpose(frame[top : top + crop_h, left : left + crop_w]) for frame in frames]
    crop = torch.from_numpy(crops[0][:, None] if len(crops) == 1 else np.stack(crops, axis=1))
    x = _resample(crop.to(torch.float32).div_(255.0), size)  # (size_w, N, H, C)
    x = _resample(x.permute(2, 1, 0, 3).contiguous(), size)  # (size_h, N, size_w, C)
    u8 = x.mul_(255).to(torch.uint8)
    return u8.permute(1, 3, 0, 2).to(torch.float32).sub_(127.5).div_(127.5)


def transform_frames_lerobot(frames: np.ndarray, size: int) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, size, size) float32 in [-1, 1] on the host (as `transform_frames`), bit-exact
    to LeRobot's GR00T preprocessing: no crop, the Eagle image processor's uint8 bicubic antialiased squash to
    size x size (torchvision's native uint8 path on CPU), then (x - 127.5) / 127.5."""
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()
    if x.shape[-2:] != (size, size):
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=True)
    return (x.to(torch.float32) - 127.5) / 127.5


def _interpolation(frame: np.ndarray, width: int, height: int) -> str:
    return "INTER_AREA" if frame.shape[0] >= height and frame.shape[1] >= width else "INTER_LINEAR"


def resize_frame(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) frame resized to `size` (W, H): OpenCV area interpolation when shrinking, bilinear otherwise."""
    width, height = size
    if frame.shape[:2] == (height, width):
        return frame
    interp = getattr(cv2, _interpolation(frame, width, height))
    return cv2.resize(frame, (width, height), interpolation=interp)


class Processor:
    """Turns Isaac-format observations into complete `ModelInputs` (tokenized prompt included) and normalized
    actions back into `action.<key>` arrays."""

    def __init__(
        self,
        data_config: DataConfig,
        metadata: EmbodimentMetadata,
        tokenizer: PromptTokenizer,
        *,
        max_state_dim: int,
        max_action_dim: int,
        image_size: int = 224,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        pipeline: str = "isaac",
        bounds: RequestBounds | None = None,
        prompt_step: int = 1,
    ):
        """`bounds`: observations per call and pixels per call (default `RequestBounds()`), checked before any
        frame is resized. `prompt_step` > 1 (a static-shape backend's `Backend.prompt_step`): every prompt is
        left-padded to a multiple of that many tokens, the padding masked and hidden from the action head too
        (`ModelInputs.isolate_padding`), so that instructions of similar length share one compiled graph."""
        if pipeline not in PIPELINES:
            raise ValueError(f"image preprocessing {pipeline!r} is not one of {PIPELINES}")
        self.config = data_config
        self.pipeline = pipeline  # "isaac" or "lerobot": whose image and state preprocessing to reproduce
        self.tokenizer = tokenizer
        self.embodiment_tag, self.embodiment_id = metadata.tag, metadata.embodiment_id
        self.image_size = image_size
        self.max_state_dim = max_state_dim
        self.device = torch.device(device)
        self.dtype = dtype
        states, actions = key_transforms(data_config, metadata)
        check_widths(data_config, states, actions, max_state_dim, max_action_dim)
        self.video_resolution = {k: metadata.video_resolution[k] for k in data_config.video_keys}
        self.bounds = bounds or RequestBounds()
        self.prompt_step = prompt_step
        self.state_transforms = {t.key: t for t in states}
        self.action_transforms = {t.key: t for t in actions}
        self.state_dims = {t.key: t.width for t in states}  # as the robot gives them
        self.state_min = {k: metadata.stats[k].min for k in data_config.state_keys if k in metadata.stats}
        self.state_max = {k: metadata.stats[k].max for k in data_config.state_keys if k in metadata.stats}
        self.action_slices: dict[str, slice] = {}  # each action key's columns of the model's prediction
        start = 0
        for t in actions:
            self.action_slices[t.key] = slice(start, start + t.model_width)
            start += t.model_width
        self.action_dim = start  # the embodiment's action dims, the first of the model's max_action_dim
        self.key_dims = {**self.state_dims, **{t.key: t.width for t in actions}}
        self._warned: set[str] = set()

    # ---- validation -------------------------------------------------------------------------------

    @property
    def resized_pixels(self) -> dict[str, int]:
        """Per camera, the pixels each of its frames is resized to before inference (what a frame costs at least)."""
        if self.pipeline == "lerobot":
            return {key: self.image_size**2 for key in self.config.video_keys}
        return {key: width * height for key, (width, height) in self.video_resolution.items()}

    def check(self, obs: dict) -> tuple[bool, int]:
        """Validate keys, dtypes and shapes; return (batched, batch size)."""
        if not isinstance(obs, dict):
            raise ValueError(f"observation must be a dict, got {type(obs).__name__}")
        expected = [*self.config.video_keys, *self.config.state_keys, self.config.language_key]
        missing = [k for k in expected if k not in obs]
        extra = [k for k in obs if k not in expected]
        if missing or extra:
            raise ValueError(
                f"observation keys do not match data config {self.config.name!r}: missing {missing}, "
                f"unexpected {extra[:10]}{' and more' if len(extra) > 10 else ''}; expected exactly {expected}"
            )
        self.bounds.check(obs, self.resized_pixels)
        first = self.config.video_keys[0]
        frames = self._array(first, obs[first])
        if frames.ndim not in (4, 5):
            raise ValueError(f"{first}: expected (T, H, W, 3) or (B, T, H, W, 3), received shape {frames.shape}")
        batched = frames.ndim == 5
        batch = frames.shape[0] if batched else 1
        lead = (batch, 1) if batched else (1,)
        for key in self.config.video_keys:
            frames = self._array(key, obs[key])
            want = "(B, 1, H, W, 3)" if batched else "(1, H, W, 3)"
            if frames.dtype != np.uint8:
                raise ValueError(f"{key}: expected dtype uint8, received {frames.dtype}")
            if frames.ndim != len(lead) + 3 or frames.shape[: len(lead)] != lead:
                raise ValueError(f"{key}: expected shape {want} with B={batch}, received {frames.shape}")
            if frames.shape[-1] != 3:
                raise ValueError(f"{key}: expected 3 RGB channels (last axis), received shape {frames.shape}")
            height, width = frames.shape[-3:-1]
            if height == 0 or width == 0 or height * width > MAX_FRAME_PIXELS:
                raise ValueError(f"{key}: frame of {width}x{height} pixels; expected a non-empty frame of at most "
                                 f"{MAX_FRAME_PIXELS} pixels (the training resolution is "
                                 f"{self.video_resolution[key][0]}x{self.video_resolution[key][1]})")
        for key in self.config.state_keys:
            state = self._array(key, obs[key])
            want = (*lead, self.state_dims[key])
            if state.dtype.kind not in "fiu":
                raise ValueError(f"{key}: expected a float array, received dtype {state.dtype}")
            if state.shape != want:
                rotation = self.state_transforms[key].rotation
                what = f" (a {rotation[0]} rotation)" if rotation else ""
                raise ValueError(f"{key}: expected shape {want}{what}, received {state.shape}")
            if not np.isfinite(state).all():
                raise ValueError(f"{key}: expected finite values, received {state.reshape(-1)[:16].tolist()}")
            bounds = self.state_transforms[key].range
            if bounds is None:
                continue
            lo, hi = bounds
            span = hi - lo  # a constant dimension (max == min) normalizes to 0 whatever it reads
            with np.errstate(over="ignore"):  # 1e308 deviates by inf: refused below like any far value
                deviation = np.where(span > 0, np.abs(2 * (state - lo) / np.where(span > 0, span, 1.0) - 1), 0.0)
            if (deviation > MAX_STATE_DEVIATION).any():
                raise ValueError(f"{key}: values {state.reshape(-1)[:8].tolist()} lie far outside the checkpoint's "
                                 f"statistics (min {lo.tolist()}, max {hi.tolist()}): more than "
                                 f"{MAX_STATE_DEVIATION:g}x the range away, a sign of wrong units (degrees/radians)")
        return batched, batch

    def state_warning(self, obs: dict) -> str | None:
        """A warning when a state lies more than 25% of the range outside the checkpoint's statistics: the usual
        sign that the robot's units differ from the training data's (degrees vs -100..100, another calibration)."""
        far = []
        for key in self.config.state_keys:
            if self.state_transforms[key].range is None:
                continue
            x = np.asarray(obs[key], dtype=np.float64).reshape(-1)
            lo, hi = self.state_transforms[key].range
            margin = STATE_WARNING_MARGIN * (hi - lo)
            if x.shape == lo.shape and ((x < lo - margin) | (x > hi + margin)).any():
                far.append(f"{key} {np.round(x, 1).tolist()} (statistics {np.round(lo, 1).tolist()} .. "
                           f"{np.round(hi, 1).tolist()})")
        if not far:
            return None
        return (f"the measured state lies far outside the checkpoint's statistics: {'; '.join(far)}; are the robot's "
                "units (use_degrees, calibration) those of the training data?")

    @staticmethod
    def _array(key: str, value) -> np.ndarray:
        if not isinstance(value, np.ndarray):
            raise ValueError(f"{key}: expected a numpy array, received {type(value).__name__}")
        return value

    def instructions(self, obs: dict, batched: bool, batch: int) -> list[str]:
        """The language instruction(s): a list of one str (or a str), or B strings / a (B, 1) array when batched."""
        key = self.config.language_key
        value = obs[key]
        texts = [value] if isinstance(value, str) else list(np.asarray(value, dtype=object).reshape(-1))
        if len(texts) != batch or not all(isinstance(t, str) for t in texts):
            want = f"{batch} strings (list or (B, 1) array)" if batched else "a list of one string"
            raise ValueError(f"{key}: expected {want}, received {value!r}")
        return [str(t) for t in texts]

    # ---- transforms -------------------------------------------------------------------------------

    def _fit_resolution(self, key: str, frames: np.ndarray) -> np.ndarray:
        """Resize (N, H, W, 3) frames to the camera's training resolution when they differ (warns once)."""
        width, height = self.video_resolution[key]
        if frames.shape[1:3] == (height, width):
            return frames
        if key not in self._warned:
            self._warned.add(key)
            log.warning("%s: frames are %dx%d, the checkpoint was trained on %dx%d; resizing them (OpenCV %s)",
                        key, frames.shape[2], frames.shape[1], width, height, _interpolation(frames[0], width, height))
        return np.stack([resize_frame(f, (width, height)) for f in frames])

    def pixel_values(self, obs: dict, batch: int) -> torch.Tensor:
        """(B*V, 3, S, S) in the model dtype on the model device, ordered sample, then camera."""
        per_camera = []
        for key in self.config.video_keys:
            frames = obs[key].reshape(batch, *obs[key].shape[-3:])
            if self.pipeline == "isaac":  # Isaac resizes to the training resolution first; LeRobot squashes any
                per_camera.append(transform_frames(self._fit_resolution(key, frames), self.image_size))
            else:
                per_camera.append(transform_frames_lerobot(frames, self.image_size))
        pixels = torch.stack(per_camera, dim=1).flatten(0, 1)  # on the host, where the transforms are exact
        return pixels.to(self.device, self.dtype)

    def state(self, obs: dict, batch: int) -> torch.Tensor:
        """Each state key through its transforms (`gr00t_fast.policy.transforms`), concatenated and zero-padded,
        (B, 1, D): in float64 as Isaac computes it, in float32 as LeRobot does.

        LeRobot's GR00T N1.5 preprocessing (`GrootPackInputsStep`) knows one normalization, min-max over the
        statistics in float32, `2 * (x - min) / (max - min) - 1` (0 where max == min): NVIDIA's `min_max` in float32
        bit for bit (a factor of 2 commutes with rounding), so a `min_max` key gets LeRobot's own values. For every
        other key LeRobot's GR00T has nothing, and it gets NVIDIA's transforms in float32, the normalization the
        checkpoint was trained with (never min-max in its place): sin/cos, rotations (converted, then min-max over
        NVIDIA's fixed bounds), `binary`, unnormalized keys, `q99` and `mean_std` (LeRobot's general normalizer has
        QUANTILES and MEAN_STD, with an epsilon and no clamp, but its GR00T pipeline does not use them).
        """
        dtype = np.float64 if self.pipeline == "isaac" else np.float32
        out = np.zeros((batch, 1, self.max_state_dim), dtype=dtype)
        start = 0
        for key, transform in self.state_transforms.items():
            x = obs[key].reshape(batch, 1, -1).astype(dtype)
            x = transform.apply(x)
            if not np.isfinite(x).all():  # a zero quaternion, a degenerate 6D rotation
                what = f"no {transform.rotation[0]} rotation" if transform.rotation else "beyond float range"
                raise ValueError(f"{key}: {obs[key].reshape(-1)[:9].tolist()} is {what} (its transforms give "
                                 "non-finite values)")
            out[..., start : start + x.shape[-1]] = x
            start += x.shape[-1]
        return torch.from_numpy(out.astype(np.float32)).to(self.device, self.dtype)

    def neutral_state(self, key: str) -> np.ndarray:
        """A valid state for `key`, (width,): mid-range, the identity for a rotation (warm-up calls)."""
        transform = self.state_transforms[key]
        if transform.rotation:
            return rotations.from_matrix(np.eye(3), transform.rotation[0])
        return (self.state_min[key] + self.state_max[key]) / 2 if key in self.state_min else np.zeros(transform.width)

    def __call__(self, obs: dict) -> ModelInputs:
        batched, batch = self.check(obs)
        ids, mask = self.tokenizer(self.instructions(obs, batched, batch), len(self.config.video_keys),
                                   self.prompt_step)
        static = self.prompt_step > 1  # one mask and one attention path for every prompt length
        return ModelInputs(
            input_ids=ids.to(self.device),
            attention_mask=mask.to(self.device) if static or not bool(mask.all()) else None,
            pixel_values=self.pixel_values(obs, batch),
            state=self.state(obs, batch),
            embodiment_id=self.embodiment_id,
            batched=batched,
            isolate_padding=static,
        )

    def decode(self, actions: torch.Tensor, batched: bool) -> dict[str, np.ndarray]:
        """(B, T, max_action_dim) normalized actions -> `action.<key>` float32 (T, D), or (B, T, D) when batched:
        each key's columns through its inverse transforms, in float32 as NVIDIA's `unapply`, whichever the pipeline:
        a `min_max` key's inverse is LeRobot's `GrootActionUnpackUnnormalizeStep` bit for bit (the same float32
        operations), and LeRobot's GR00T has no inverse for the other keys (rotations, `binary` thresholded at 0.5,
        unnormalized, `q99`, `mean_std`), as it has no normalization for their states (`state`)."""
        pred = actions.to("cpu", torch.float32).numpy()
        out = {}
        for key, dims in self.action_slices.items():
            value = self.action_transforms[key].unapply(pred[..., dims])
            out[key] = value if batched else value[0]
        return out


def processor_for_model(config: Gr00tConfig, data_config: DataConfig, metadata: EmbodimentMetadata,
                        device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                        max_instruction_tokens: int = MAX_INSTRUCTION_TOKENS, pipeline: str = "auto",
                        bounds: RequestBounds | None = None, prompt_step: int = 1) -> Processor:
    """The processor for a model: its Eagle tokenizer, state/action widths and image size; `pipeline` "auto"
    reproduces the preprocessing of the code that wrote the checkpoint (Isaac-GR00T or LeRobot); `prompt_step`:
    see `Processor`."""
    tokenizer = PromptTokenizer.for_model(config, max_instruction_tokens)
    return Processor(data_config, metadata, tokenizer, max_state_dim=config.max_state_dim,
                     max_action_dim=config.max_action_dim, image_size=config.image_size, device=device, dtype=dtype,
                     pipeline=metadata.source if pipeline == "auto" else pipeline, bounds=bounds,
                     prompt_step=prompt_step)
