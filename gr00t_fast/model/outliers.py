"""Activation outlier channels for random-weight checkpoints (`make-checkpoint --outliers`).

Trained transformers carry a few input channels of their Linear layers 20-100x the rest (LLM.int8(), SmoothQuant,
"massive activations"); random weights do not, so an INT8 error measured on them flatters INT8: a lower bound.
`OutlierChannels` puts such channels where INT8 sees them, in the inputs of the quantized stacks' Linear layers: in
each stack the same `CHANNELS` channels (fixed per stack, as a trained model's outlier dimensions are), each scaled by
its own factor, drawn log-uniformly from `FACTORS`, in the norm that feeds the layer:

    vision (SigLIP)      layer_norm1, layer_norm2: weight and bias  -> q/k/v_proj, mlp.fc1
    llm (Qwen3)          input_layernorm, post_attention_layernorm  -> q/k/v_proj, mlp.gate/up_proj
    vl_self_attention    norm1, norm3: weight and bias              -> attn1.to_q/k/v, ff.net.0.proj
    dit                  AdaLN norm1.linear rows of 1 + scale, shift -> attn1.to_q (to_k/to_v too in the
                         self-attention blocks); proj_out_1 likewise -> proj_out_2

The next Linear's weight columns for those channels are divided by the same factor: SmoothQuant's migration run
backwards, so the network computes the same function (to float rounding) while its Linear inputs carry the outliers,
and INT8's error on such a checkpoint against the plain one of the same seed is the outliers' doing alone. The
residual stream is left as it is: a norm is not invariant to one channel's scale, so outliers there would make
another network, not the same one with outliers. The DiT's feed-forward norm has no affine weight: its inputs
carry none.
"""

import math
import re
from dataclasses import dataclass

import torch

from gr00t_fast.model.config import Gr00tConfig

CHANNELS = 4  # outlier channels per stack
FACTORS = (30.0, 100.0)  # each channel's factor, drawn log-uniformly: its largest input then lands ~20-120x the median

# (stack, official tensor name pattern, how the stack's channels scale the tensor). The DiT's even blocks attend to
# the VL features (their to_k/to_v read those, not the norm), the odd ones to themselves (interleave_self_attention).
RULES = (
    ("vision", r"vision_model\.encoder\.layers\.\d+\.layer_norm[12]\.(weight|bias)$", "norm"),
    ("vision", r"vision_model\.encoder\.layers\.\d+\.(self_attn\.[qkv]_proj|mlp\.fc1)\.weight$", "columns"),
    ("llm", r"language_model\.model\.layers\.\d+\.(input|post_attention)_layernorm\.weight$", "norm"),
    ("llm", r"language_model\.model\.layers\.\d+\.(self_attn\.[qkv]_proj|mlp\.(gate|up)_proj)\.weight$", "columns"),
    ("vl_self_attention", r"vl_self_attention\.transformer_blocks\.\d+\.norm[13]\.(weight|bias)$", "norm"),
    ("vl_self_attention",
     r"vl_self_attention\.transformer_blocks\.\d+\.(attn1\.to_[qkv]|ff\.net\.0\.proj)\.weight$", "columns"),
    ("dit", r"action_head\.model\.transformer_blocks\.\d+\.norm1\.linear\.(weight|bias)$", "scale_shift"),
    ("dit", r"action_head\.model\.proj_out_1\.(weight|bias)$", "shift_scale"),
    ("dit", r"action_head\.model\.(transformer_blocks\.\d*[02468]\.attn1\.to_q"
            r"|transformer_blocks\.\d*[13579]\.attn1\.to_[qkv]|proj_out_2)\.weight$", "columns"),
)


@dataclass(frozen=True)
class OutlierChannels:
    """Each stack's outlier channels and their factors: {stack: (channel indices, factors)}."""

    channels: dict[str, tuple[torch.Tensor, torch.Tensor]]

    @classmethod
    def draw(cls, config: Gr00tConfig, seed: int) -> "OutlierChannels":
        """The channels of a checkpoint of `config`, drawn from `seed` by a generator of their own (the weights stay
        those of the plain checkpoint of that seed)."""
        gen = torch.Generator().manual_seed(seed)
        widths = {"vision": config.vision.hidden_size, "llm": config.llm.hidden_size,
                  "vl_self_attention": config.vl_self_attention.inner_dim, "dit": config.dit.inner_dim}
        lo, hi = (math.log(f) for f in FACTORS)
        return cls({stack: (torch.randperm(width, generator=gen)[:CHANNELS],
                            (lo + (hi - lo) * torch.rand(CHANNELS, generator=gen, dtype=torch.float64)).exp().float())
                    for stack, width in widths.items()})

    def apply(self, name: str, tensor: torch.Tensor) -> torch.Tensor:
        """`tensor` (the official tensor `name`, float32) with the outlier channels scaled in, or as it is."""
        for stack, pattern, how in RULES:
            if re.search(pattern, name):
                index, factor = self.channels[stack]
                return scaled(tensor, how, index, factor, name.endswith("bias"))
        return tensor


def scaled(t: torch.Tensor, how: str, index: torch.Tensor, factor: torch.Tensor, bias: bool) -> torch.Tensor:
    """`t` with channels `index` scaled by `factor` as `how` says (`RULES`): a norm's outputs ("norm"), a Linear's
    input columns divided ("columns"), or the rows of an AdaLN modulation Linear (`scale_shift` / `shift_scale`:
    which half is which) whose outputs become (1 + scale) * factor and shift * factor."""
    t = t.clone()
    rows = factor.view(-1, *[1] * (t.dim() - 1))
    if how == "norm":
        t[index] *= factor
    elif how == "columns":
        t[:, index] /= factor
    else:
        half = t.shape[0] // 2
        scale, shift = (index, index + half) if how == "scale_shift" else (index + half, index)
        t[shift] *= rows
        t[scale] = rows * (1 + t[scale]) - 1 if bias else rows * t[scale]
    return t
