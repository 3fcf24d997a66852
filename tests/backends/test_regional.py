"""The torch backend's int8 model with its transformer blocks compiled one by one (`gr00t_fast.backends.regional`):
where it happens, that the blocks trace whole with dynamic shapes (one graph for every prompt length), that autograd
runs their own code, and that a failing compiler leaves the model's own code running, said once. The suite keeps the
blocks eager (conftest.py); these tests turn them on. Traced with "aot_eager" (no C++ compile); Inductor itself in the
slow lane."""

import contextlib
import functools
import gc
import itertools
import warnings
import weakref

import numpy as np
import pytest
import torch
import torch._dynamo.utils

from fakes import packs_bf16
from gr00t_fast.backends import eager
from gr00t_fast.backends.base import LoadRequest
from gr00t_fast.backends.compiled import CompiledBackend
from gr00t_fast.backends.regional import (COMPILE_BLOCKS_ENV, CompiledBlocks, blocks_compile, blocks_without_compiler,
                                          check_compile_blocks_env, uncompile_blocks)
from gr00t_fast.dev.bench.common import bench_noise, bench_observation
from gr00t_fast.loading import load_policy
from gr00t_fast.model import load_model, packed, precision, quantize
from gr00t_fast.model.packed import PackedLinear, pack_linears, unpack_linears
from gr00t_fast.model.quantize import QuantizedLinear, quantize_linears, transformer_blocks
from gr00t_fast.model.rtc import RTC_CHUNK_KEY, RtcRequest
from gr00t_fast.runtime.torch_thread import run_on_torch_thread


@pytest.fixture
def blocks_on(monkeypatch):
    monkeypatch.setenv(COMPILE_BLOCKS_ENV, "1")


def traced_policy(checkpoint, monkeypatch, **options):
    """An int8 policy of `checkpoint` whose blocks run as "aot_eager" traces them (the load's own wiring)."""
    monkeypatch.setattr(eager, "CompiledBlocks", functools.partial(CompiledBlocks, backend="aot_eager"))
    return load_policy(checkpoint, device="cpu", dtype="float32", quantize="int8", warmup=False, **options)


def test_the_blocks_are_every_layer_of_each_stack_in_order(tiny_checkpoint):
    model = load_model(tiny_checkpoint, device="cpu", dtype=torch.float32)
    cfg = model.config
    kinds = [type(block).__name__ for block in transformer_blocks(model)]
    counts = [("SiglipLayer", cfg.vision.num_layers), ("Qwen3Layer", cfg.llm.num_layers),
              ("SelfAttentionBlock", cfg.vl_self_attention.num_layers), ("DiTBlock", cfg.dit.num_layers)]
    assert kinds == [kind for kind, count in counts for _ in range(count)]
    assert len({id(block) for block in transformer_blocks(model)}) == len(kinds)


@pytest.mark.parametrize("engine", quantize.INT8_ENGINES)
def test_blocks_compile_where_int8_runs_on_a_cpu_engine(tiny_checkpoint, int8_at_every_size, blocks_on, monkeypatch,
                                                        engine):
    monkeypatch.setenv(quantize.INT8_ENGINE_ENV, engine)
    model = load_model(tiny_checkpoint, device="cpu", dtype=torch.float32)
    assert not blocks_compile(model)  # float: nothing to fuse
    pack_linears(model)
    assert not blocks_compile(model)
    unpack_linears(model)
    quantize_linears(model, "int8")
    assert {m.engine for m in model.modules() if isinstance(m, QuantizedLinear)} == {engine}
    assert blocks_compile(model)
    assert pack_linears(model) and blocks_compile(model)  # float32 packed (an AMD CPU with AVX2 only): its own op
    monkeypatch.setenv(COMPILE_BLOCKS_ENV, "0")
    assert not blocks_compile(model)


@packs_bf16
def test_blocks_of_a_packed_model_stay_eager(tiny_checkpoint, int8_at_every_size, blocks_on, monkeypatch):
    """bf16 weights packed for oneDNN (where bf16 pays): that path stays packed and eager, as it was measured."""
    monkeypatch.setattr(packed, "bf16_units", lambda: "AMX")
    bf16 = load_model(tiny_checkpoint, device="cpu", dtype=torch.bfloat16)
    quantize_linears(bf16, "int8")
    assert blocks_compile(bf16) and pack_linears(bf16)
    assert not blocks_compile(bf16)


@pytest.mark.parametrize("value", ["yes", "", "2"])
def test_a_bad_compile_blocks_value_is_refused_before_the_weights(tiny_checkpoint, monkeypatch, value):
    monkeypatch.setenv(COMPILE_BLOCKS_ENV, value)
    with pytest.raises(ValueError, match=f"{COMPILE_BLOCKS_ENV}={value!r}: expected 0"):
        check_compile_blocks_env()
    monkeypatch.setattr("gr00t_fast.loading.load_model", lambda *a, **k: pytest.fail("weights read"))
    with pytest.raises(ValueError, match=COMPILE_BLOCKS_ENV):
        load_policy(tiny_checkpoint, device="cpu", quantize="int8", warmup=False)


def test_an_int8_load_compiles_its_blocks_and_says_so(tiny_checkpoint, int8_at_every_size, blocks_on, monkeypatch):
    policy = traced_policy(tiny_checkpoint, monkeypatch)
    blocks = transformer_blocks(policy.model)
    assert policy.backend.blocks.blocks == blocks and all("forward" in vars(block) for block in blocks)
    assert policy.precision.compiled_blocks == len(blocks)
    assert f"its {len(blocks)} transformer blocks compiled" in str(policy.precision)
    monkeypatch.setenv(COMPILE_BLOCKS_ENV, "0")
    assert traced_policy(tiny_checkpoint, monkeypatch).backend.blocks is None
    monkeypatch.setenv(COMPILE_BLOCKS_ENV, "1")
    assert load_policy(tiny_checkpoint, device="cpu", dtype="float32", warmup=False).backend.blocks is None


def engine_variant(variant: str, monkeypatch, request) -> None:
    """`variant`: "onednn", "onednn prepacked" (full size's large weights), "fbgemm" (a CPU without VNNI), or "fbgemm,
    float layers packed" (an AMD CPU with AVX2 only: every other stack layer left in float32, packed for oneDNN with
    the layers outside the stacks)."""
    if variant == "onednn prepacked":
        request.getfixturevalue("int8_prepacked")
    if variant.startswith("fbgemm"):
        monkeypatch.setenv(quantize.INT8_ENGINE_ENV, "fbgemm")
    if variant == "fbgemm, float layers packed":
        monkeypatch.setattr(packed, "float32_packs", lambda: True)
        monkeypatch.setattr(precision, "BF16_MIN_PARAMETERS", 0)
        layers = itertools.count()
        monkeypatch.setattr(quantize, "int8_pays_on_cpu", lambda *shape: next(layers) % 2 == 0)


def check_engine_variant(variant: str, model: torch.nn.Module) -> None:
    layers = [m for m in model.modules() if isinstance(m, QuantizedLinear)]
    assert layers and {m.engine for m in layers} == {variant.split(",")[0].split()[0]}
    if variant.startswith("onednn"):
        assert all((m.packed is not None) == (variant == "onednn prepacked") for m in layers)
    in_blocks = [type(m) for block in transformer_blocks(model) for m in block.modules()]
    assert (PackedLinear in in_blocks) == (variant == "fbgemm, float layers packed")


ENGINE_VARIANTS = ["onednn", "onednn prepacked", "fbgemm", "fbgemm, float layers packed"]


@pytest.mark.parametrize("variant", ENGINE_VARIANTS)
def test_the_traced_blocks_give_the_eager_actions_and_one_graph_for_every_prompt(
        tiny_checkpoint, int8_at_every_size, blocks_on, monkeypatch, request, variant):
    """On either engine, oneDNN's with its weights prepacked too, FBGEMM's with float layers packed for oneDNN in the
    blocks: Dynamo passes each GEMM through as its own op."""
    engine_variant(variant, monkeypatch, request)
    policy = traced_policy(tiny_checkpoint, monkeypatch)
    check_engine_variant(variant, policy.model)
    observation, noise = bench_observation(policy), bench_noise(policy)
    prompts = ["pick", "pick up the red cube and put it in the box", "pick up the red cube, then the blue one, "
               "and put both of them in the box on the left side of the table"]
    graphs = torch._dynamo.utils.counters["stats"]
    before, compiled, unique = graphs["unique_graphs"], [], []
    for prompt in prompts:
        observation[policy.data_config.language_key] = [prompt]
        compiled.append(policy.get_action(observation, noise=noise))
        unique.append(graphs["unique_graphs"])
    assert unique[0] > before and policy.backend.blocks.on  # the calls ran compiled code
    assert unique[0] == unique[1] == unique[2]  # dynamic shapes: another prompt length compiles nothing
    policy.backend.blocks.switch(False)
    for prompt, actions in zip(prompts, compiled):
        observation[policy.data_config.language_key] = [prompt]
        own = policy.get_action(observation, noise=noise)
        for key in own:
            assert abs(actions[key] - own[key]).max() < 1e-4, (prompt, key)
    assert policy.backend.fallback is None


def test_autograd_runs_the_blocks_own_code(tiny_checkpoint, int8_at_every_size, blocks_on, monkeypatch):
    model = load_model(tiny_checkpoint, device="cpu", dtype=torch.float32)
    quantize_linears(model, "int8")
    calls = []

    def counting(graph, example_inputs):  # a Dynamo backend: its graph runs as traced, each run counted
        return lambda *args: calls.append(1) or graph.forward(*args)

    CompiledBlocks(transformer_blocks(model), backend=counting)
    block = model.backbone.eagle_model.vision_model.vision_model.encoder.layers[0]
    x = torch.randn(1, 5, block.layer_norm1.normalized_shape[0], requires_grad=True)
    with torch.enable_grad():
        out = block(x)
    assert calls == [] and out.requires_grad
    with torch.no_grad():
        block(x)
    assert calls == [1]  # autograd off: the compiled code


@contextlib.contextmanager
def no_cpp_compiler():
    """Inductor finds no C++ compiler (its `cpp.cxx` names none that answers), on the thread that loads and compiles
    (Inductor's config is per thread)."""
    import torch._inductor.config as inductor_config

    before = run_on_torch_thread(lambda: inductor_config.cpp.cxx)
    run_on_torch_thread(lambda: setattr(inductor_config.cpp, "cxx", (None, "/nonexistent/g++")))
    try:
        yield
    finally:
        run_on_torch_thread(lambda: setattr(inductor_config.cpp, "cxx", before))


def test_a_missing_cpp_compiler_is_said_before_the_weights_and_the_blocks_run_their_own_code(
        tiny_checkpoint, int8_at_every_size, blocks_on, monkeypatch):
    request = LoadRequest(tiny_checkpoint, dtype="float32", quantize="int8", device=torch.device("cpu"))
    assert run_on_torch_thread(lambda: blocks_without_compiler(request)) is None  # this machine has one
    said = (r"torch backend: no C\+\+ compiler for Inductor \(No working C\+\+ compiler found.*/nonexistent/g\+\+"
            r".*\): the int8 model's transformer blocks run their own code")
    with no_cpp_compiler():
        with monkeypatch.context() as patched:
            patched.setattr("gr00t_fast.loading.load_model", lambda *a, **k: pytest.fail("the weights were read"))
            with pytest.warns(RuntimeWarning, match=said), pytest.raises(pytest.fail.Exception, match="weights"):
                load_policy(tiny_checkpoint, device="cpu", dtype="float32", quantize="int8", warmup=False)
        with pytest.warns(RuntimeWarning, match=said):
            policy = load_policy(tiny_checkpoint, device="cpu", dtype="float32", quantize="int8", warmup=False)
    assert policy.backend.blocks is None and not policy.precision.compiled_blocks


def test_the_compile_backend_without_a_cpp_compiler_is_refused_before_the_weights(tiny_checkpoint, monkeypatch):
    monkeypatch.setattr("gr00t_fast.loading.load_model", lambda *a, **k: pytest.fail("the weights were read"))
    with no_cpp_compiler(), pytest.raises(ValueError, match=r"--backend compile on a CPU needs a C\+\+ compiler for "
                                                            r"Inductor's kernels \(No working C\+\+ compiler found"):
        load_policy(tiny_checkpoint, device="cpu", backend="compile", warmup=False)


def failing_compiler(graph, example_inputs):
    raise RuntimeError("no working C++ compiler")


@pytest.mark.parametrize("max_batch, batch, warmed", [(4, True, True), (1, True, False), (4, False, False)])
def test_a_server_that_takes_batches_compiles_for_them_in_its_warm_up(tiny_checkpoint, int8_at_every_size, blocks_on,
                                                                     monkeypatch, max_batch, batch, warmed):
    """Dynamo specializes sizes of 1: a server's first batch would compile during serving. Its warm-up (`batch`,
    what `serve --max_batch` above 1 asks) makes one batch of 2, whose code serves every batch; a policy of one
    observation at a time, and a load that serves no batches (`run`, `eval`), do not."""
    policy = traced_policy(tiny_checkpoint, monkeypatch, max_batch=max_batch)
    assert policy.backend.compiles_batches_once
    policy.warmup(iterations=1, batch=batch)
    assert ((True, True) in policy.backend.blocks.keys) == warmed
    assert (False, True) in policy.backend.blocks.keys
    policy.backend.blocks.switch(False)  # the blocks' own code: nothing compiles for batches
    assert not policy.backend.compiles_batches_once
    compiled = CompiledBackend(policy.model, backend="aot_eager")  # static shapes: a compile per batch size
    assert not compiled.compiles_batches_once


def test_a_failing_compiler_leaves_the_model_s_own_code_said_once(tiny_checkpoint, int8_at_every_size, blocks_on,
                                                                  monkeypatch):
    policy = traced_policy(tiny_checkpoint, monkeypatch)
    observation, noise = bench_observation(policy), bench_noise(policy)
    policy.backend.blocks.switch(False)
    own = policy.get_action(observation, noise=noise)
    blocks = policy.backend.blocks = CompiledBlocks(transformer_blocks(policy.model), backend=failing_compiler)
    with pytest.warns(RuntimeWarning, match="compiling the int8 transformer blocks failed \\(RuntimeError: no "
                                            "working C\\+\\+ compiler\\); their own code runs from now on") as caught:
        actions = policy.get_action(observation, noise=noise)
    assert len(caught) == 1 and "\n" not in str(caught[0].message)
    assert all((actions[key] == own[key]).all() for key in own)
    assert not blocks.on and policy.backend.fallback == blocks.fallback and policy.precision.compiled_blocks == 0
    with warnings.catch_warnings(record=True) as again:
        warnings.simplefilter("always")
        policy.get_action(observation, noise=noise)
    assert again == []  # said once


def test_a_call_the_model_s_own_code_refuses_too_keeps_the_blocks_compiled(tiny_checkpoint, int8_at_every_size,
                                                                          blocks_on, monkeypatch):
    model = load_model(tiny_checkpoint, device="cpu", dtype=torch.float32)
    quantize_linears(model, "int8")
    blocks = CompiledBlocks(transformer_blocks(model), backend=failing_compiler)

    block = blocks.blocks[0]
    x = torch.randn(1, 5, block.layer_norm1.normalized_shape[0])

    def call():
        with torch.no_grad():  # autograd off: the compiled code, where the failing compiler raises
            block(x)
        raise ValueError("a bad call")  # the model's own code gets this far

    with pytest.raises(ValueError, match="a bad call"):
        run_on_torch_thread(lambda: blocks.run(call))
    assert blocks.on and blocks.fallback is None


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["onednn", "fbgemm, float layers packed"])
def test_inductor_compiles_the_int8_blocks_into_the_eager_actions(tiny_checkpoint, int8_at_every_size, blocks_on,
                                                                   monkeypatch, request, variant):
    """The load's own compile, Inductor's C++ kernels, oneDNN's int8 weights prepacked where the CPU has VNNI or AMX,
    or FBGEMM's with float32 layers packed for oneDNN (each GEMM called as it is: Inductor's own lowering of oneDNN's
    linear takes no weight packed before): close to the blocks' own code (int8 levels a float rounding apart may
    flip: not bit for bit), for two prompt lengths."""
    if variant == "onednn" and quantize.onednn_packs(quantize.ONEDNN_PACK_MIN_WEIGHT, 1):
        monkeypatch.setattr(quantize, "ONEDNN_PACK_MIN_WEIGHT", 0)
    engine_variant(variant, monkeypatch, request)
    policy = load_policy(tiny_checkpoint, device="cpu", dtype="float32", quantize="int8")  # the warm-up compiles
    assert policy.backend.blocks.on and policy.backend.fallback is None
    if variant != "onednn":  # oneDNN's weights prepacked or not by the CPU
        check_engine_variant(variant, policy.model)
    observation, noise = bench_observation(policy), bench_noise(policy)
    for prompt in ["pick", "pick up the red cube and put it in the box on the left"]:
        observation[policy.data_config.language_key] = [prompt]
        compiled = policy.get_action(observation, noise=noise)
        policy.backend.blocks.switch(False)
        own = policy.get_action(observation, noise=noise)
        policy.backend.blocks.switch(True)
        for key in own:
            assert abs(compiled[key] - own[key]).max() < 0.05 * (abs(own[key]).max() + 1), (prompt, key)


@pytest.mark.slow
def test_guided_real_time_chunking_runs_through_the_compiled_blocks(tiny_checkpoint, int8_at_every_size, blocks_on,
                                                                   monkeypatch):
    """Its VJP (autograd on) runs the blocks' own code, the rest of the sampler their compiled code: the actions of
    the blocks' own code throughout."""
    policy = traced_policy(tiny_checkpoint, monkeypatch)
    observation = policy.dummy_observation()
    noise = np.random.default_rng(0).standard_normal((16, 32)).astype(np.float32)
    first = policy.get_action(observation, noise=noise, rtc=RtcRequest("freeze", np.zeros((0, 0), np.float32), 0))
    rtc = RtcRequest("guided", first[RTC_CHUNK_KEY][4:], 3)
    compiled = policy.get_action(observation, noise=noise, rtc=rtc)
    policy.backend.blocks.switch(False)
    own = policy.get_action(observation, noise=noise, rtc=rtc)
    assert abs(compiled[RTC_CHUNK_KEY] - own[RTC_CHUNK_KEY]).max() < 1e-4
    assert policy.backend.fallback is None


def test_a_new_batch_size_or_grad_mode_is_a_first_call_of_its_own(tiny_checkpoint, int8_at_every_size, blocks_on,
                                                                   monkeypatch):
    """Dynamo specializes sizes of 1 and compiles again for a batch of 2 (and for no_grad after inference_mode): that
    call takes the cache lock and shows the progress line too."""
    policy = traced_policy(tiny_checkpoint, monkeypatch)
    seen = []
    monkeypatch.setattr("gr00t_fast.backends.regional.compiling",
                        lambda cache, desc, new: seen.append(new) or contextlib.nullcontext())
    observation, noise = bench_observation(policy), bench_noise(policy)
    batch = {key: np.stack([value, value]) if isinstance(value, np.ndarray) else value * 2
             for key, value in observation.items()}
    for obs in (observation, observation, batch, batch, observation):
        policy.get_action(obs)
    assert seen == [True, False, True, False, False]
    assert policy.backend.blocks.keys == {(False, True), (True, True)}


def test_the_blocks_do_not_keep_a_dropped_model_alive(tiny_checkpoint, int8_at_every_size):
    model = load_model(tiny_checkpoint, device="cpu", dtype=torch.float32)
    quantize_linears(model, "int8")
    blocks = CompiledBlocks(transformer_blocks(model), backend="aot_eager")
    block = model.backbone.eagle_model.vision_model.vision_model.encoder.layers[0]
    with torch.no_grad():
        block(torch.randn(1, 5, block.layer_norm1.normalized_shape[0]))
    dropped = weakref.ref(block)
    gc.disable()  # freed by reference counting alone, no cycle collection needed
    try:
        del model, blocks, block
        assert dropped() is None
    finally:
        gc.enable()


def test_another_backend_loading_the_model_gets_the_blocks_own_code(tiny_checkpoint, int8_at_every_size, blocks_on,
                                                                    monkeypatch):
    policy = traced_policy(tiny_checkpoint, monkeypatch)
    model = policy.model
    CompiledBackend.load(model, LoadRequest(tiny_checkpoint, options={"backend": "aot_eager"}))
    assert not any("forward" in vars(block) for block in transformer_blocks(model))
    assert model.precision.compiled_blocks == 0 and uncompile_blocks(model) == 0


@pytest.mark.slow
def test_a_second_load_reuses_the_graphs_of_the_first(tiny_checkpoint, int8_at_every_size, blocks_on, monkeypatch):
    """A reloaded checkpoint (a server's CheckpointWatch) adds no graphs: Dynamo's cache serves the second load's
    blocks, not a compile of their own towards its recompile limit."""
    graphs = torch._dynamo.utils.counters["stats"]
    for load in range(2):
        policy = traced_policy(tiny_checkpoint, monkeypatch)
        observation, noise = bench_observation(policy), bench_noise(policy)
        before = graphs["unique_graphs"]
        policy.get_action(observation, noise=noise)
        assert policy.backend.blocks.on
    assert graphs["unique_graphs"] == before  # the second load's first call compiled nothing
