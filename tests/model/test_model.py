"""The network: golden intermediates, transformers parity, hoisted sampler, full-size layout."""

import numpy as np
import pytest
import torch

from shared_data import shared_path
from gr00t_fast.model.random_checkpoint import SIZES, SPECIAL_TOKENS, eagle_config, model_config, parameter_shapes
from gr00t_fast.model import Gr00tConfig, Gr00tN15, load_model
from gr00t_fast.model.action_head import discretized_timesteps
from gr00t_fast.model.eagle import Qwen3Model, SiglipVisionModel
from gr00t_fast.model.fusion import fuse_state_dict


@pytest.fixture(scope="module")
def golden():
    return np.load(shared_path("golden_public", "cases.npz"))


@pytest.fixture(scope="module")
def golden_model(golden_checkpoint):
    return load_model(golden_checkpoint, device="cpu", dtype=torch.float32)


@pytest.fixture(scope="module")
def tiny_model(tiny_checkpoint):
    return load_model(tiny_checkpoint, device="cpu", dtype=torch.float32)


def golden_case(golden, case):
    def get(key):
        return torch.from_numpy(np.asarray(golden[f"{case}/{key}"]))

    return get


@pytest.mark.parametrize("case", ["so100_steps4", "so100_steps2_instr2", "so100_dualcam_steps4", "so100_batch2_samelen"])
@torch.inference_mode()
def test_golden_intermediates(golden, golden_model, case):
    """NVIDIA's own pipeline (fp32 CPU) on its own tiny checkpoint: every intermediate within 1e-4."""
    get = golden_case(golden, case)
    eagle = golden_model.backbone.eagle_model
    ids, pixels, state, emb = get("m.eagle_input_ids"), get("m.eagle_pixel_values"), get("m.state"), get("m.embodiment_id")
    noise = get("noise").reshape(-1, 16, 32)
    torch.testing.assert_close(eagle.vision_model(pixels), get("i.vision_last_hidden_state"), atol=1e-4, rtol=0)
    torch.testing.assert_close(eagle.embed(ids, pixels), get("i.llm_inputs_embeds"), atol=1e-4, rtol=0)
    feats = golden_model.backbone(ids, get("m.eagle_attention_mask"), pixels)
    torch.testing.assert_close(feats, get("i.backbone_features"), atol=1e-4, rtol=0)
    head = golden_model.action_head
    vl = head.encode_vl(feats)
    torch.testing.assert_close(vl, get("i.vl_embs"), atol=1e-4, rtol=0)
    torch.testing.assert_close(head.state_encoder(state, emb), get("i.state_features"), atol=1e-4, rtol=0)
    steps = int(golden[f"{case}/denoising_steps"])
    assert discretized_timesteps(steps, 1000) == get("i.timesteps")[:, 0].tolist()
    pred = golden_model(ids, None, pixels, state, emb, noise, steps)
    torch.testing.assert_close(pred, get("action_pred").reshape(-1, 16, 32), atol=1e-4, rtol=0)
    # The first velocity from the plain step function, too.
    torch.testing.assert_close(head.velocity(noise, 0, vl, state, emb), get("i.velocity")[0], atol=1e-4, rtol=0)


@pytest.mark.parametrize("steps", [1, 2, 3, 4, 7])
@torch.inference_mode()
def test_hoisted_sampler_equals_plain_loop(tiny_model, steps):
    torch.manual_seed(0)
    head, cfg = tiny_model.action_head, tiny_model.config
    feats = torch.randn(2, 40, cfg.backbone_embedding_dim)
    state = torch.randn(2, 1, cfg.max_state_dim)
    emb = torch.tensor([31, 5])
    noise = torch.randn(2, cfg.action_horizon, cfg.action_dim)
    vl = head.encode_vl(feats)
    x = noise.clone()
    for t in discretized_timesteps(steps, cfg.num_timestep_buckets):
        x = x + (1.0 / steps) * head.velocity(x, t, vl, state, emb)
    torch.testing.assert_close(head.get_action(feats, state, emb, noise, steps), x, atol=1e-5, rtol=0)


@torch.inference_mode()
def test_single_embodiment_int_matches_tensor(tiny_model):
    torch.manual_seed(1)
    cfg = tiny_model.config
    feats, state = torch.randn(2, 30, cfg.backbone_embedding_dim), torch.randn(2, 1, cfg.max_state_dim)
    noise = torch.randn(2, cfg.action_horizon, cfg.action_dim)
    head = tiny_model.action_head
    torch.testing.assert_close(
        head.get_action(feats, state, 31, noise, 4), head.get_action(feats, state, torch.tensor([31, 31]), noise, 4)
    )


def test_zero_steps_rejected(tiny_model):
    cfg = tiny_model.config
    with pytest.raises(ValueError, match="num_steps"):
        tiny_model.action_head.get_action(
            torch.zeros(1, 4, cfg.backbone_embedding_dim), torch.zeros(1, 1, 64), 31, torch.zeros(1, 16, 32), 0
        )


@torch.inference_mode()
def test_left_padding_keeps_real_token_features(tiny_model):
    """RoPE is relative, so left padding with a mask must not change the real tokens' features."""
    torch.manual_seed(2)
    cfg = tiny_model.config
    n_img = cfg.num_image_tokens
    ids = torch.cat([torch.tensor([5, 6, 7]), torch.full((n_img,), cfg.image_token_index), torch.tensor([8, 9])])
    pixels = torch.randn(1, 3, cfg.image_size, cfg.image_size)
    alone = tiny_model.backbone(ids[None], None, pixels)
    pad = 4
    padded = torch.cat([torch.zeros(pad, dtype=torch.long), ids])[None]
    mask = torch.cat([torch.zeros(pad, dtype=torch.long), torch.ones(len(ids), dtype=torch.long)])[None]
    out = tiny_model.backbone(padded, mask, pixels)
    torch.testing.assert_close(out[:, pad:], alone, atol=1e-5, rtol=1e-5)
    assert torch.isfinite(out).all()


def full_config() -> Gr00tConfig:
    preset = SIZES["full"]
    return Gr00tConfig.from_dicts(model_config(preset, 2048), eagle_config(preset, dict(SPECIAL_TOKENS), "bfloat16"))


def test_full_size_names_and_shapes_match_official_tsv():
    """All 898 official names and shapes, built on the meta device (no allocation)."""
    rows = shared_path("spec", "gr00t_n15_parameters.tsv").read_text().splitlines()
    official = {name: list(map(int, shape.strip("[]").split(","))) for name, shape in (r.split("\t") for r in rows)}
    ours = {name: list(shape) for name, shape in parameter_shapes(full_config()).items()}
    assert ours == official
    assert sum(int(np.prod(s)) for s in ours.values()) == 2_413_522_880


def test_full_size_defaults_from_builtin_dimensions():
    cfg = full_config()
    assert (cfg.vision.hidden_size, cfg.vision.num_layers, cfg.llm.hidden_size, cfg.llm.num_layers) == (1152, 27, 2048, 12)
    assert cfg.num_image_tokens == 256 and cfg.dit.inner_dim == 1536 and cfg.vl_self_attention.inner_dim == 2048


# ------------------------------------------------------------------- parity with transformers' modules
transformers = pytest.importorskip("transformers")


def _randomize(module: torch.nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * (0.1 if p.ndim > 1 else 0.05) + (1.0 if p.ndim == 1 else 0.0))


@torch.inference_mode()
def test_siglip_matches_transformers(tiny_model):
    v = tiny_model.config.vision
    hf_cfg = transformers.SiglipVisionConfig(
        hidden_size=v.hidden_size, intermediate_size=v.intermediate_size, num_hidden_layers=v.num_layers,
        num_attention_heads=v.num_heads, image_size=v.image_size, patch_size=v.patch_size,
        layer_norm_eps=v.layer_norm_eps, hidden_act="gelu_pytorch_tanh", vision_use_head=False,
    )
    hf = transformers.SiglipVisionModel(hf_cfg).eval()
    _randomize(hf, 3)
    ours = SiglipVisionModel(v)
    state = {k if k.startswith("vision_model.") else "vision_model." + k: t for k, t in hf.state_dict().items()}
    ours.load_state_dict(fuse_state_dict(ours, state))
    pixels = torch.randn(2, 3, v.image_size, v.image_size, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(ours(pixels), hf(pixel_values=pixels).last_hidden_state, atol=1e-5, rtol=1e-5)


@torch.inference_mode()
@pytest.mark.parametrize("image_size, patch_size", [(224, 14), (230, 14)])  # 230: a border short of a patch
def test_patch_embedding_is_one_matrix_product(image_size, patch_size):
    """No convolution runs (cuDNN would take a float32 one in TF32 on a GPU), and the product equals it, a border
    short of a patch dropped as the convolution drops it."""
    from gr00t_fast.model.config import VisionConfig
    from gr00t_fast.model.eagle import SiglipEmbeddings

    embeddings = SiglipEmbeddings(VisionConfig(hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2,
                                               image_size=image_size, patch_size=patch_size))
    pixels = torch.randn(2, 3, image_size, image_size, generator=torch.Generator().manual_seed(5))
    with torch.profiler.profile() as prof:
        out = embeddings(pixels)
    names = {event.name for event in prof.events()}
    assert "aten::linear" in names and not any("conv" in name for name in names)
    conv = embeddings.patch_embedding(pixels).flatten(2).transpose(1, 2) + embeddings.position_embedding.weight
    torch.testing.assert_close(out, conv, atol=1e-5, rtol=1e-5)


@torch.inference_mode()
def test_qwen3_matches_transformers(tiny_model):
    c = tiny_model.config.llm
    hf_cfg = transformers.Qwen3Config(
        hidden_size=c.hidden_size, intermediate_size=c.intermediate_size, num_hidden_layers=c.num_layers,
        num_attention_heads=c.num_heads, num_key_value_heads=c.num_kv_heads, head_dim=c.head_dim,
        rms_norm_eps=c.rms_norm_eps, rope_theta=c.rope_theta, vocab_size=c.vocab_size, attn_implementation="sdpa",
    )
    hf = transformers.Qwen3Model(hf_cfg).eval()
    _randomize(hf, 5)
    ours = Qwen3Model(c)
    ours.load_state_dict(fuse_state_dict(ours, hf.state_dict()))
    embeds = torch.randn(2, 37, c.hidden_size, generator=torch.Generator().manual_seed(6))
    expected = hf(inputs_embeds=embeds).last_hidden_state  # includes the final RMSNorm
    torch.testing.assert_close(ours(embeds), expected, atol=1e-5, rtol=1e-5)
    mask = torch.ones(2, 37, dtype=torch.long)
    mask[1, :5] = 0
    expected = hf(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(ours(embeds, mask)[1, 5:], expected[1, 5:], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours(embeds, mask)[0], expected[0], atol=1e-5, rtol=1e-5)


def test_model_builds_on_meta_for_any_config(tiny_model):
    with torch.device("meta"):
        model = Gr00tN15(tiny_model.config)
    assert all(p.is_meta for p in model.parameters())


def test_step_tables_are_made_once_and_serve_autograd(tiny_model):
    head, cfg = tiny_model.action_head, tiny_model.config
    head.step_table_cache.clear()
    with torch.inference_mode():
        tables = head.step_tables(3, cfg.action_horizon)
    assert head.step_tables(3, cfg.action_horizon) is tables
    assert len(tables.block_mods) == 3 and len(tables.block_mods[0]) == len(head.model.transformer_blocks)
    assert not tables.time_codes.is_inference()  # usable where autograd runs (e.g. a guided sampler)
    torch.manual_seed(2)
    feats, state = torch.randn(1, 20, cfg.backbone_embedding_dim), torch.randn(1, 1, cfg.max_state_dim)
    noise = torch.randn(1, cfg.action_horizon, cfg.action_dim, requires_grad=True)
    head.get_action(feats, state, 31, noise, 3).sum().backward()
    assert noise.grad is not None and torch.isfinite(noise.grad).all()


@torch.inference_mode()
def test_padding_queries_attend_uniformly_with_a_finite_mask(tiny_model):
    """Upstream fills masked positions with float32's minimum, so a padding query (every key masked) attends
    uniformly; the finite fill plus zeroed padding queries gives the same hidden states, padding rows included."""
    from gr00t_fast.model.eagle import MASK_FILL, PaddingMask, padding_mask, rope_cos_sin

    llm, c = tiny_model.backbone.eagle_model.language_model.model, tiny_model.config.llm
    embeds = torch.randn(2, 12, c.hidden_size, generator=torch.Generator().manual_seed(8))
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[1, :4] = 0
    ours = padding_mask(mask, torch.float32)
    assert torch.isfinite(ours.bias).all() and ours.queries[1, 0, :4].eq(0).all()
    upstream = PaddingMask(ours.bias.masked_fill(ours.bias == MASK_FILL, torch.finfo(torch.float32).min),
                           torch.ones_like(ours.queries))
    cos, sin = rope_cos_sin(12, c.head_dim, c.rope_theta, embeds.device, embeds.dtype)
    x = embeds
    for layer in llm.layers:
        x = layer(x, cos, sin, upstream)
    torch.testing.assert_close(llm(embeds, mask), llm.norm(x), atol=1e-6, rtol=0)


MIXED_PROMPTS = ["go", "Pick up the red cube.", "Stack the three blue blocks on the plate, then wave twice.",
                 "Open the drawer and put the sponge inside it carefully, then close it.", "x y"]


@pytest.mark.parametrize("batch", [1, 2, 3, 4, 5])
@torch.inference_mode()
def test_collated_batch_equals_unbatched_calls(tiny_model, batch):
    """Different robots' calls (prompts of different lengths, embodiments) collated into one batch get exactly
    their own unbatched actions: the padding is hidden from the action head as well."""
    from gr00t_fast.backends import make_backend
    from gr00t_fast.model.inputs import collate
    from gr00t_fast.model.inputs import example_inputs
    from gr00t_fast.model.tokenizer import PromptTokenizer

    backend, cfg = make_backend("torch", tiny_model), tiny_model.config
    calls = [example_inputs(cfg, instructions=[text], seed=i) for i, text in enumerate(MIXED_PROMPTS[:batch])]
    for i, (inputs, _) in enumerate(calls):
        inputs.embodiment_id = 31 if i % 2 else 5
    alone = torch.cat([backend(inputs, noise, 4) for inputs, noise in calls])
    collated = collate([inputs for inputs, _ in calls], PromptTokenizer.for_model(cfg).pad_id)
    assert collated.isolate_padding and (batch == 1) == (collated.attention_mask is None)
    together = backend(collated, torch.cat([noise for _, noise in calls]), 4)
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=0)
    if batch > 1:  # upstream's batching (padding not hidden) does change the padded rows' actions
        collated.isolate_padding = False
        assert (backend(collated, torch.cat([noise for _, noise in calls]), 4) - alone).abs().max() > 1e-4


@torch.inference_mode()
def test_collated_batch_compiled_matches_eager(tiny_model):
    """The compile backend (one graph for the whole call) isolates the padding too (aot_eager: no Inductor)."""
    from gr00t_fast.backends import make_backend
    from gr00t_fast.model.inputs import collate
    from gr00t_fast.model.inputs import example_inputs
    from gr00t_fast.model.tokenizer import PromptTokenizer

    cfg = tiny_model.config
    calls = [example_inputs(cfg, instructions=[text], seed=i) for i, text in enumerate(MIXED_PROMPTS[:3])]
    batch = collate([inputs for inputs, _ in calls], PromptTokenizer.for_model(cfg).pad_id)
    noise = torch.cat([noise for _, noise in calls])
    compiled = make_backend("compile", tiny_model, backend="aot_eager")
    torch.testing.assert_close(compiled(batch, noise, 4), make_backend("torch", tiny_model)(batch, noise, 4),
                               atol=1e-5, rtol=0)
