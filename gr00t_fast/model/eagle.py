"""Eagle 2.5 VL backbone of N1.5: SigLIP vision tower, one-Linear connector, truncated Qwen3 decoder.

Module and parameter names mirror the official checkpoint (`backbone.eagle_model.*`) so weights load
by name. Static shapes and `scaled_dot_product_attention` throughout; no Python-side shape logic in the
hot path beyond what depends on the (static) input shapes.
"""

import contextlib
from functools import lru_cache
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from gr00t_fast.model.config import LLMConfig, VisionConfig
from gr00t_fast.model.packed import linear_gelu


# --------------------------------------------------------------------------------------------- SigLIP
class SiglipAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv_proj, self.out_proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.fused = {"qkv_proj": (("q_proj", dim), ("k_proj", dim), ("v_proj", dim))}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, D = x.shape
        q, k, v = self.qkv_proj(x).view(B, N, 3, self.heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.out_proj(out.transpose(1, 2).reshape(B, N, D))


class SiglipMLP(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(linear_gelu(self.fc1, x))


class SiglipLayer(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.self_attn = SiglipAttention(cfg.hidden_size, cfg.num_heads)
        self.layer_norm2 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.mlp = SiglipMLP(cfg.hidden_size, cfg.intermediate_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class SiglipEmbeddings(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.patch_embedding = nn.Conv2d(3, cfg.hidden_size, cfg.patch_size, stride=cfg.patch_size)
        self.position_embedding = nn.Embedding(cfg.num_patches, cfg.hidden_size)
        self.grid, self.patch = cfg.image_size // cfg.patch_size, cfg.patch_size  # patches per side, their side

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The patch convolution as the matrix product it is (stride = kernel): one GEMM, in float32 where the model
        is, on every device (cuDNN runs a float32 convolution in TF32 unless told otherwise: 5e-4 off NVIDIA's
        actions, emulated). Its shapes come from the config (the convolution's: a border short of a patch is
        dropped)."""
        conv, g, p = self.patch_embedding, self.grid, self.patch
        pixels = pixel_values[..., : g * p, : g * p].to(conv.weight.dtype)
        patches = pixels.reshape(-1, 3, g, p, g, p).permute(0, 2, 4, 1, 3, 5).reshape(-1, g * g, 3 * p * p)
        return F.linear(patches, conv.weight.flatten(1), conv.bias) + self.position_embedding.weight


class SiglipEncoder(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.layers = nn.ModuleList(SiglipLayer(cfg) for _ in range(cfg.num_layers))


class SiglipVisionTransformer(nn.Module):
    """SigLIP (So400m/14 at full size) without its unused attention-pooling head."""

    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.embeddings = SiglipEmbeddings(cfg)
        self.encoder = SiglipEncoder(cfg)
        self.post_layernorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = self.embeddings(pixel_values)
        for layer in self.encoder.layers:
            x = layer(x)
        return self.post_layernorm(x)


class SiglipVisionModel(nn.Module):
    """Wrapper level that exists only to match the `vision_model.vision_model.*` checkpoint names."""

    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.vision_model = SiglipVisionTransformer(cfg)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.vision_model(pixel_values)


# ---------------------------------------------------------------------------------------------- Qwen3
class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


@lru_cache(maxsize=16)
def rope_cos_sin(seq_len: int, head_dim: int, theta: float, device: torch.device, dtype: torch.dtype):
    """RoPE tables for positions 0..L-1 (computed in float32 as in Qwen3, then cast), made once per prompt length
    (outside any inference mode, so that they also serve autograd). Traced by torch.compile (which inlines the
    cache), no grad-mode switch enters the graph: one would keep AOTAutograd from caching it between runs."""
    with contextlib.nullcontext() if torch.compiler.is_compiling() else torch.inference_mode(False):
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64, device=device).float() / head_dim))
        freqs = torch.outer(torch.arange(seq_len, device=device, dtype=torch.float32), inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(dtype), emb.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


MASK_FILL = torch.finfo(torch.float16).min  # finite in every dtype the model and its graphs run in


class PaddingMask(NamedTuple):
    """Left padding for the LLM's attention. `bias`: additive (B,1,L,L), causal plus padding keys; `queries`:
    (B,1,L,1), 0 on padding queries. A padding query sees only masked keys: zeroing it makes its scores equal, so
    it attends uniformly, as upstream's rows filled with the dtype's minimum do, while the fill stays finite (an
    infinite fill turns such rows into NaN in fp16/bf16 engines)."""

    bias: torch.Tensor
    queries: torch.Tensor


def padding_mask(attention_mask: torch.Tensor, dtype: torch.dtype) -> PaddingMask:
    """The `PaddingMask` of a (B, L) attention mask (1 = token, 0 = left padding)."""
    L = attention_mask.shape[-1]
    allowed = torch.ones(L, L, dtype=torch.bool, device=attention_mask.device).tril()
    allowed = allowed[None, None] & attention_mask[:, None, None, :].bool()
    bias = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, MASK_FILL)
    return PaddingMask(bias, attention_mask[:, None, :, None].to(dtype))


class Qwen3Attention(nn.Module):
    def __init__(self, cfg: LLMConfig):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        q_rows, kv_rows = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
        self.qkv_proj = nn.Linear(cfg.hidden_size, q_rows + 2 * kv_rows, bias=False)
        self.fused = {"qkv_proj": (("q_proj", q_rows), ("k_proj", kv_rows), ("v_proj", kv_rows))}
        self.o_proj = nn.Linear(cfg.num_heads * cfg.head_dim, cfg.hidden_size, bias=False)
        self.q_norm = RMSNorm(cfg.head_dim, cfg.rms_norm_eps)
        self.k_norm = RMSNorm(cfg.head_dim, cfg.rms_norm_eps)

    def forward(self, x, cos, sin, mask: PaddingMask | None) -> torch.Tensor:
        B, L, _ = x.shape
        q, k, v = self.qkv_proj(x).view(B, L, self.heads + 2 * self.kv_heads, self.head_dim).split(
            (self.heads, self.kv_heads, self.kv_heads), dim=2)
        q, k = self.q_norm(q).transpose(1, 2), self.k_norm(k).transpose(1, 2)
        q, k, v = apply_rope(q, cos, sin), apply_rope(k, cos, sin), v.transpose(1, 2)
        # grouped-query attention: each KV head serves heads / kv_heads query heads, without copies (the ONNX
        # exporter has no grouped SDPA: the exported graphs repeat K and V)
        gqa = not torch.onnx.is_in_onnx_export()
        if not gqa:
            k, v = (t.repeat_interleave(self.heads // self.kv_heads, dim=1) for t in (k, v))
        if mask is not None:
            q = q * mask.queries
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=None if mask is None else mask.bias,
                                             is_causal=mask is None, enable_gqa=gqa)
        return self.o_proj(out.transpose(1, 2).reshape(B, L, -1))


class Qwen3MLP(nn.Module):
    def __init__(self, cfg: LLMConfig):
        super().__init__()
        self.gate_up_proj = nn.Linear(cfg.hidden_size, 2 * cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)
        self.fused = {"gate_up_proj": (("gate_proj", cfg.intermediate_size), ("up_proj", cfg.intermediate_size))}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        return self.down_proj(F.silu(gate) * up)


class Qwen3Layer(nn.Module):
    def __init__(self, cfg: LLMConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Qwen3Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = Qwen3MLP(cfg)

    def forward(self, x, cos, sin, mask) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class Qwen3Model(nn.Module):
    def __init__(self, cfg: LLMConfig):
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(Qwen3Layer(cfg) for _ in range(cfg.num_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden state after the kept layers and the final RMSNorm. Positions are 0..L-1."""
        L = inputs_embeds.shape[1]
        cos, sin = rope_cos_sin(L, self.cfg.head_dim, self.cfg.rope_theta, inputs_embeds.device, inputs_embeds.dtype)
        mask = None if attention_mask is None else padding_mask(attention_mask, inputs_embeds.dtype)
        x = inputs_embeds
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        return self.norm(x)


class Qwen3ForCausalLM(nn.Module):
    """Name level for `language_model.model.*`; the tied `lm_head` is never computed."""

    def __init__(self, cfg: LLMConfig):
        super().__init__()
        self.model = Qwen3Model(cfg)


# ---------------------------------------------------------------------------------------------- Eagle
def merge_image_embeddings(
    token_embeddings: torch.Tensor, input_ids: torch.Tensor, image_embeds: torch.Tensor, image_token_index: int
) -> torch.Tensor:
    """Embedding lookup with every image-token position replaced, in order, by the projected patches.

    No count check here (it would sync the device every call): the prompt tokenizer puts exactly 256 image
    tokens per camera into every prompt.
    """
    embeds = F.embedding(input_ids, token_embeddings)
    is_image = (input_ids == image_token_index).unsqueeze(-1)
    return embeds.masked_scatter(is_image, image_embeds.to(embeds.dtype))


class EagleModel(nn.Module):
    def __init__(self, vision: VisionConfig, llm: LLMConfig, image_token_index: int):
        super().__init__()
        self.image_token_index = image_token_index
        self.vision_model = SiglipVisionModel(vision)
        self.mlp1 = nn.Sequential(nn.Linear(vision.hidden_size, llm.hidden_size))
        self.language_model = Qwen3ForCausalLM(llm)

    def image_embeddings(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(images, patches, llm hidden): SigLIP features through the `mlp1` connector."""
        return self.mlp1(self.vision_model(pixel_values))

    def embed(self, input_ids: torch.Tensor, pixel_values: torch.Tensor) -> torch.Tensor:
        """Token embeddings with every `<IMG_CONTEXT>` position replaced, in order, by projected patches."""
        table = self.language_model.model.embed_tokens.weight
        return merge_image_embeddings(table, input_ids, self.image_embeddings(pixel_values), self.image_token_index)

    def forward(self, input_ids, attention_mask, pixel_values) -> torch.Tensor:
        return self.language_model.model(self.embed(input_ids, pixel_values), attention_mask)


class EagleBackbone(nn.Module):
    """`backbone.*`: Eagle features, `eagle_linear` is Identity for N1.5."""

    def __init__(self, vision: VisionConfig, llm: LLMConfig, image_token_index: int):
        super().__init__()
        self.eagle_model = EagleModel(vision, llm, image_token_index)

    def forward(self, input_ids, attention_mask, pixel_values) -> torch.Tensor:
        return self.eagle_model(input_ids, attention_mask, pixel_values)
