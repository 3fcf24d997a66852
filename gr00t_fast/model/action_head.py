"""N1.5 flow-matching action head: VL self-attention, per-embodiment encoders, AdaLN DiT, Euler sampler.

`get_action` hoists all work that does not change across denoising steps out of the step loop: per call the
cross-attention K/V of the VL features and the state/future tokens; once per step count (`StepTables`, cached)
the timestep embeddings, every AdaLN modulation and the time codes of the action encoder. `velocity` is the plain
per-step function it must match.
"""

import math
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from gr00t_fast.model.config import Gr00tConfig, TransformerConfig
from gr00t_fast.model.packed import linear_gelu

EmbodimentId = torch.Tensor | int  # (B,) long tensor, or one Python int for the whole batch (no gather copy)
EulerStep = Callable[[torch.Tensor, int, Callable[[torch.Tensor, int], torch.Tensor]], torch.Tensor]


def discretized_timesteps(num_steps: int, buckets: int) -> list[int]:
    """Euler time points as the official sampler discretizes them: int(k/N * buckets)."""
    return [int(k / float(num_steps) * buckets) for k in range(num_steps)]


def timestep_sinusoid(t: torch.Tensor, dim: int = 256) -> torch.Tensor:
    """diffusers `Timesteps(dim, flip_sin_to_cos=True, downscale_freq_shift=1)`."""
    half = dim // 2
    exponent = -math.log(10000) * torch.arange(half, dtype=torch.float32, device=t.device) / (half - 1)
    emb = t[:, None].float() * torch.exp(exponent)[None]
    return torch.cat([torch.cos(emb), torch.sin(emb)], dim=-1)


def action_time_code(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Action-encoder sinusoid: sin half then cos half, frequencies exp(-i*ln(1e4)/(dim/2))."""
    half = dim // 2
    exponent = -torch.arange(half, dtype=torch.float, device=t.device) * (math.log(10000.0) / half)
    freqs = t.float().unsqueeze(-1) * exponent.exp()
    return torch.cat([torch.sin(freqs), torch.cos(freqs)], dim=-1)


def key_padding_mask(attention_mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """Additive (B,1,1,L) attention mask hiding the left-padding positions of the VL features (0 in
    `attention_mask`) from every query; None for None. Upstream passes no such mask: its padding features are
    attended to, so a padded row's actions depend on the other prompts of its batch."""
    if attention_mask is None:
        return None
    hidden = attention_mask[:, None, None, :] == 0
    return torch.zeros(hidden.shape, dtype=dtype, device=hidden.device).masked_fill(hidden, torch.finfo(dtype).min)


# ------------------------------------------------------------------------------------ building blocks
class CategorySpecificLinear(nn.Module):
    """Linear layer with one weight matrix per embodiment: W (E, in, out), b (E, out)."""

    def __init__(self, num_categories: int, in_dim: int, out_dim: int):
        super().__init__()
        self.W = nn.Parameter(torch.empty(num_categories, in_dim, out_dim))
        self.b = nn.Parameter(torch.empty(num_categories, out_dim))

    def forward(self, x: torch.Tensor, cat: EmbodimentId) -> torch.Tensor:
        """x (B, T, in) -> (B, T, out), bias added inside the matmul."""
        if isinstance(cat, int):
            return torch.addmm(self.b[cat], x.reshape(-1, x.shape[-1]), self.W[cat]).view(*x.shape[:-1], -1)
        return torch.baddbmm(self.b[cat].unsqueeze(1), x, self.W[cat])


class CategorySpecificMLP(nn.Module):
    def __init__(self, num_categories: int, in_dim: int, hidden: int, out_dim: int):
        super().__init__()
        self.layer1 = CategorySpecificLinear(num_categories, in_dim, hidden)
        self.layer2 = CategorySpecificLinear(num_categories, hidden, out_dim)

    def forward(self, x: torch.Tensor, cat: EmbodimentId) -> torch.Tensor:
        return self.layer2(F.relu(self.layer1(x, cat)), cat)


class MultiEmbodimentActionEncoder(nn.Module):
    def __init__(self, action_dim: int, hidden: int, num_embodiments: int):
        super().__init__()
        self.hidden = hidden
        self.W1 = CategorySpecificLinear(num_embodiments, action_dim, hidden)
        self.W2 = CategorySpecificLinear(num_embodiments, 2 * hidden, hidden)
        self.W3 = CategorySpecificLinear(num_embodiments, hidden, hidden)

    def forward(self, actions: torch.Tensor, time_code: torch.Tensor, cat: EmbodimentId) -> torch.Tensor:
        """actions (B,T,A); time_code (B,T,hidden) from `action_time_code`."""
        a = self.W1(actions, cat)
        x = torch.cat([a, time_code.to(a.dtype)], dim=-1)
        return self.W3(F.silu(self.W2(x, cat)), cat)


class Attention(nn.Module):
    """diffusers `Attention` with biases (to_q / to_k / to_v / to_out.0), its projections fused at load: q/k/v
    for self-attention, k/v for cross-attention to `kv_dim` features (`gr00t_fast.model.fusion`)."""

    def __init__(self, dim: int, heads: int, head_dim: int, kv_dim: int | None = None):
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        if kv_dim is None:
            self.to_qkv = nn.Linear(dim, 3 * inner)
            self.fused = {"to_qkv": (("to_q", inner), ("to_k", inner), ("to_v", inner))}
        else:
            self.to_q, self.to_kv = nn.Linear(dim, inner), nn.Linear(kv_dim, 2 * inner)
            self.fused = {"to_kv": (("to_k", inner), ("to_v", inner))}
        self.to_out = nn.ModuleList([nn.Linear(inner, dim)])

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        B, N, _ = x.shape
        return x.view(B, N, self.heads, -1).transpose(1, 2)

    def key_value(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-attention K, V of `context` (computed once per call by the sampler)."""
        k, v = self.to_kv(context).chunk(2, dim=-1)
        return self.split_heads(k), self.split_heads(v)

    def forward(self, x: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor] | None = None,
                mask: torch.Tensor | None = None, rows: int | None = None) -> torch.Tensor:
        """Self-attention of `x`, or cross-attention to `kv` (`key_value` of the context); `mask`: additive,
        hiding keys (`key_padding_mask`). `rows`: only the last `rows` positions query (keys are all of `x`)."""
        if kv is None:
            q, k, v = self.to_qkv(x).chunk(3, dim=-1)  # one projection (quantized or not) for every position
            q, k, v = (self.split_heads(t) for t in (q if rows is None else q[:, -rows:], k, v))
        else:
            q, (k, v) = self.split_heads(self.to_q(x if rows is None else x[:, -rows:])), kv
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        B, _, N, _ = out.shape
        return self.to_out[0](out.transpose(1, 2).reshape(B, N, -1))


class GeluProj(nn.Module):
    def __init__(self, dim: int, inner: int):
        super().__init__()
        self.proj = nn.Linear(dim, inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear_gelu(self.proj, x)


class FeedForward(nn.Module):
    """diffusers `FeedForward(activation_fn="gelu-approximate")`: net.0.proj, (dropout), net.2."""

    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.net = nn.ModuleList([GeluProj(dim, dim * mult), nn.Identity(), nn.Linear(dim * mult, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net[2](self.net[0](x))


class AdaLayerNorm(nn.Module):
    """LayerNorm without affine, modulated by Linear(SiLU(temb)) split as (scale, shift)."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.linear = nn.Linear(dim, 2 * dim)
        self.dim, self.eps = dim, eps

    def modulation(self, temb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight, bias) = (1 + scale, shift): (D,) each for one temb (D,), (B, 1, D) for a batch (B, D)."""
        return batch_affine(*self.linear(F.silu(temb)).chunk(2, dim=-1))

    def forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return modulated_layer_norm(x, weight, bias, self.dim, self.eps)


def batch_affine(scale: torch.Tensor, shift: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """AdaLN's (1 + scale, shift), unsqueezed to (B, 1, D) when they differ per batch row."""
    return (1 + scale, shift) if scale.dim() == 1 else ((1 + scale).unsqueeze(-2), shift.unsqueeze(-2))


def modulated_layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, dim: int,
                         eps: float) -> torch.Tensor:
    """LayerNorm(x) * weight + bias; one kernel (LayerNorm's own affine) when the modulation is the whole batch's."""
    if weight.dim() == 1:
        return F.layer_norm(x, (dim,), weight, bias, eps)
    return F.layer_norm(x, (dim,), eps=eps) * weight + bias


class DiTBlock(nn.Module):
    """AdaLN -> attention (cross to the VL features, or self) -> residual; LN -> FF -> residual."""

    def __init__(self, dim: int, heads: int, head_dim: int, kv_dim: int | None):
        super().__init__()
        self.cross, self.dim = kv_dim is not None, dim
        self.norm1 = AdaLayerNorm(dim)
        self.attn1 = Attention(dim, heads, head_dim, kv_dim)
        self.ff = FeedForward(dim)

    def forward(self, x, weight, bias, kv: tuple[torch.Tensor, torch.Tensor] | None,
                context_mask: torch.Tensor | None = None, rows: int | None = None) -> torch.Tensor:
        """`weight`, `bias`: the AdaLN modulation (`AdaLayerNorm.modulation`); `context_mask` (`key_padding_mask`)
        hides context positions from a cross-attention block. `rows`: compute only the last `rows` positions'
        outputs (every position still serves as a key)."""
        attended = self.attn1(self.norm1(x, weight, bias), kv, context_mask if self.cross else None, rows)
        x = (x if rows is None else x[:, -rows:]) + attended
        return x + self.ff(F.layer_norm(x, (self.dim,), eps=1e-5))


class TimestepEmbedding(nn.Module):
    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        self.linear_1, self.linear_2 = nn.Linear(in_dim, dim), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.silu(self.linear_1(x)))


class TimestepEncoder(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.timestep_embedder = TimestepEmbedding(256, dim)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        dtype = self.timestep_embedder.linear_1.bias.dtype  # bias: a packed layer's weight is opaque
        return self.timestep_embedder(timestep_sinusoid(t).to(dtype))


class DiT(nn.Module):
    """Cross-attention DiT: even blocks attend to the VL features, odd blocks to themselves."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.dim = dim = cfg.inner_dim
        self.timestep_encoder = TimestepEncoder(dim)
        self.transformer_blocks = nn.ModuleList(
            DiTBlock(dim, cfg.num_heads, cfg.head_dim,
                     None if (i % 2 == 1 and cfg.interleave_self_attention) else cfg.cross_attention_dim)
            for i in range(cfg.num_layers)
        )
        self.proj_out_1 = nn.Linear(dim, 2 * dim)
        self.proj_out_2 = nn.Linear(dim, cfg.output_dim)

    def output_modulation(self, temb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight, bias) of the output norm: proj_out_1 splits as (shift, scale), the blocks' opposite order."""
        shift, scale = self.proj_out_1(F.silu(temb)).chunk(2, dim=-1)
        return batch_affine(scale, shift)

    def output(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return self.proj_out_2(modulated_layer_norm(x, weight, bias, self.dim, 1e-6))

    def forward(self, x: torch.Tensor, context: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Plain DiT pass: x (B,T,D), context (B,S,Dc), t (B,) discretized timesteps."""
        temb = self.timestep_encoder(t)
        for block in self.transformer_blocks:
            kv = block.attn1.key_value(context) if block.cross else None
            x = block(x, *block.norm1.modulation(temb), kv)
        return self.output(x, *self.output_modulation(temb))


class SelfAttentionBlock(nn.Module):
    """Pre-LayerNorm transformer block (affine LayerNorms, eps 1e-5) used by `vl_self_attention`."""

    def __init__(self, dim: int, heads: int, head_dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.attn1 = Attention(dim, heads, head_dim)
        self.norm3 = nn.LayerNorm(dim, eps=1e-5)
        self.ff = FeedForward(dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn1(self.norm1(x), mask=mask)
        return x + self.ff(self.norm3(x))


class SelfAttentionTransformer(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.transformer_blocks = nn.ModuleList(
            SelfAttentionBlock(cfg.inner_dim, cfg.num_heads, cfg.head_dim) for _ in range(cfg.num_layers)
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        for block in self.transformer_blocks:
            x = block(x, mask)
        return x


# ---------------------------------------------------------------------------------------- action head
class StepTables(NamedTuple):
    """What the sampler needs that depends only on the step count (and the horizon), not on the observation."""

    block_mods: tuple[tuple[tuple[torch.Tensor, torch.Tensor], ...], ...]  # [step][block] (weight, bias), (D,)
    output_mods: tuple[tuple[torch.Tensor, torch.Tensor], ...]  # [step] (weight, bias), (D,)
    time_codes: torch.Tensor  # (steps, horizon, D) action-encoder time codes, model dtype


class FlowMatchingActionHead(nn.Module):
    def __init__(self, cfg: Gr00tConfig):
        super().__init__()
        self.cfg = cfg
        D, E = cfg.input_embedding_dim, cfg.max_num_embodiments
        self.model = DiT(cfg.dit)
        self.state_encoder = CategorySpecificMLP(E, cfg.max_state_dim, cfg.hidden_size, D)
        self.action_encoder = MultiEmbodimentActionEncoder(cfg.action_dim, D, E)
        self.action_decoder = CategorySpecificMLP(E, cfg.hidden_size, cfg.hidden_size, cfg.action_dim)
        self.future_tokens = nn.Embedding(cfg.num_target_vision_tokens, D)
        self.vlln = nn.LayerNorm(cfg.backbone_embedding_dim) if cfg.use_vlln else nn.Identity()
        self.vl_self_attention = SelfAttentionTransformer(cfg.vl_self_attention)
        if cfg.add_pos_embed:
            self.position_embedding = nn.Embedding(cfg.max_seq_len, D)
        self.step_table_cache: dict[tuple, StepTables] = {}  # cleared when weights change (quantization)

    def step_tables(self, num_steps: int, horizon: int) -> StepTables:
        """The `StepTables` of `num_steps` steps, computed once (outside any inference mode, so that the tables
        also serve autograd) and kept; call it eagerly, before a compiled sampler that takes them."""
        device, dtype = self.future_tokens.weight.device, self.future_tokens.weight.dtype
        key = (num_steps, horizon, device, dtype)
        if key not in self.step_table_cache:
            with torch.inference_mode(False), torch.no_grad():
                dit = self.model
                t_steps = torch.tensor(discretized_timesteps(num_steps, self.cfg.num_timestep_buckets), device=device)
                temb = dit.timestep_encoder(t_steps)  # (S, D): the same for every batch row
                self.step_table_cache[key] = StepTables(
                    tuple(tuple(blk.norm1.modulation(temb[s]) for blk in dit.transformer_blocks)
                          for s in range(num_steps)),
                    tuple(dit.output_modulation(temb[s]) for s in range(num_steps)),
                    action_time_code(t_steps[:, None].expand(-1, horizon), self.cfg.input_embedding_dim).to(dtype))
        return self.step_table_cache[key]

    def encode_vl(self, backbone_features: torch.Tensor, padding: torch.Tensor | None = None) -> torch.Tensor:
        """`vlln` + VL self-attention, run once per inference. `padding`: a `key_padding_mask` hiding the left
        padding (None: upstream, which attends to it)."""
        return self.vl_self_attention(self.vlln(backbone_features), padding)

    def prefix_tokens(self, state: torch.Tensor, embodiment_id: EmbodimentId) -> torch.Tensor:
        """[state token, future tokens]: (B, 1 + num_target_vision_tokens, D)."""
        state_tok = self.state_encoder(state, embodiment_id)
        future = self.future_tokens.weight.unsqueeze(0).expand(state_tok.shape[0], -1, -1)
        return torch.cat([state_tok, future], dim=1)

    def action_tokens(self, x: torch.Tensor, time_code: torch.Tensor, embodiment_id: EmbodimentId) -> torch.Tensor:
        tokens = self.action_encoder(x, time_code, embodiment_id)
        if self.cfg.add_pos_embed:
            tokens = tokens + self.position_embedding.weight[: x.shape[1]]
        return tokens

    def velocity(self, x, t: int | torch.Tensor, vl, state, embodiment_id: EmbodimentId) -> torch.Tensor:
        """One plain denoising step, exactly as the official loop computes it: (B, horizon, action_dim). `t`: the
        discretized timestep, one int for the batch or (B,) per row (as in training)."""
        B, H, _ = x.shape
        t_batch = t if torch.is_tensor(t) else torch.full((B,), t, device=vl.device)
        code = action_time_code(t_batch.unsqueeze(1).expand(-1, H), self.cfg.input_embedding_dim)
        tokens = torch.cat([self.prefix_tokens(state, embodiment_id), self.action_tokens(x, code, embodiment_id)], 1)
        return self.action_decoder(self.model(tokens, vl, t_batch), embodiment_id)[:, -H:]

    def get_action(self, backbone_features, state, embodiment_id: EmbodimentId, noise, num_steps: int,
                   tables: StepTables | None = None, attention_mask: torch.Tensor | None = None):
        """Euler flow-matching sampler from `noise` (B, horizon, action_dim) over `num_steps` steps.

        Returns the normalized actions (B, horizon, action_dim) in float32. `tables`: `step_tables(num_steps,
        horizon)`, fetched here when not given (a compiled caller passes them in). `attention_mask` (B, L), when
        given, hides the prompts' left padding from the VL self-attention and the DiT's cross-attention (upstream
        hides it from neither).
        """
        dtype = self.future_tokens.weight.dtype
        padding = key_padding_mask(attention_mask, dtype)
        vl = self.encode_vl(backbone_features.to(dtype), padding)
        return self.sample(vl, state, embodiment_id, noise, num_steps, tables, padding=padding)

    def sample(self, vl, state, embodiment_id: EmbodimentId, noise, num_steps: int,
               tables: StepTables | None = None, step: EulerStep | None = None,
               padding: torch.Tensor | None = None) -> torch.Tensor:
        """The sampler on already encoded VL features (`encode_vl` output): (B, horizon, action_dim) float32.

        `step(x, s, velocity)` replaces the Euler update `x + velocity(x, s) / num_steps` (real-time chunking,
        `gr00t_fast.model.rtc`); `velocity(x, s)` is step s's velocity in float32. `padding`: a `key_padding_mask`
        for the cross-attention to `vl` (None: none, as upstream)."""
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        dtype = self.future_tokens.weight.dtype
        B, H, _ = noise.shape
        dit = self.model
        block_mods, output_mods, codes = tables if tables is not None else self.step_tables(num_steps, H)
        # Per-call work that does not change across steps.
        prefix = self.prefix_tokens(state.to(dtype), embodiment_id)
        kvs = [blk.attn1.key_value(vl) if blk.cross else None for blk in dit.transformer_blocks]

        last = len(dit.transformer_blocks) - 1

        def velocity(x: torch.Tensor, s: int) -> torch.Tensor:
            h = torch.cat([prefix, self.action_tokens(x.to(dtype), codes[s].expand(B, -1, -1), embodiment_id)], 1)
            # Only the action tokens are decoded, and everything after the last block's attention is per-token:
            # the last block computes the action tokens' rows alone.
            for i, (blk, (weight, bias), kv) in enumerate(zip(dit.transformer_blocks, block_mods[s], kvs)):
                h = blk(h, weight, bias, kv, padding, rows=H if i == last else None)
            return self.action_decoder(dit.output(h, *output_mods[s]), embodiment_id).float()

        x = noise.float()
        dt = 1.0 / num_steps
        for s in range(num_steps):
            x = x + dt * velocity(x, s) if step is None else step(x, s, velocity)
        return x
