"""The backend contract, checked over every backend: CPU ones through Gr00tPolicy.get_action against eager fp32,
GPU-only ones for registration and a capability check that names what this machine lacks."""

import importlib.util
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from gr00t_fast.backends import BACKENDS, Backend, BackendUnavailable, fidelity, make_backend
from gr00t_fast.backends.cuda_graph import signature
from gr00t_fast.model import load_model
from gr00t_fast.model.eagle import merge_image_embeddings
from gr00t_fast.loading import load_policy
from gr00t_fast.model.inputs import example_inputs

CPU_BACKENDS = {"torch": None, "compile": {"backend": "eager"}, "onnxruntime": None, "openvino": None}  # fast options
GPU_BACKENDS = ("cuda-graph", "tensorrt")


@pytest.fixture(scope="module")
def model(tiny_checkpoint):
    return load_model(tiny_checkpoint, device="cpu", dtype=torch.float32)


@pytest.fixture(scope="module")
def reference(model):
    return make_backend("torch", model)


@pytest.fixture(scope="module")
def padded_batch(model):
    """Two samples, two cameras, instructions of different lengths (left padding)."""
    return example_inputs(model.config, cameras=2, instructions=["Fold the napkin in half.", "Place the block."])


@pytest.fixture(scope="module")
def policies(tiny_checkpoint, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")  # exported ONNX graphs land in the gr00t-fast cache
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GR00T_FAST_CACHE", str(cache))
        return {name: load_policy(tiny_checkpoint, device="cpu", backend=name, backend_options=options, warmup=False)
                for name, options in CPU_BACKENDS.items()}


def test_registry_lists_every_backend_as_a_subclass():
    assert set(BACKENDS) == set(CPU_BACKENDS) | set(GPU_BACKENDS)
    for name, cls in BACKENDS.items():
        assert issubclass(cls, Backend) and cls.name == name


@pytest.mark.parametrize("name", sorted(CPU_BACKENDS))
@pytest.mark.slow
def test_cpu_backends_through_the_policy(policies, name):
    """Same observation and noise through get_action: actions within 1e-4 of eager, timing keys present."""
    policy, eager = policies[name], policies["torch"]
    obs = eager.dummy_observation()
    noise = np.random.default_rng(0).standard_normal((16, 32)).astype(np.float32)
    want, got = eager.get_action(obs, noise=noise), policy.get_action(obs, noise=noise)
    for key in want:
        assert got[key].shape == want[key].shape
        np.testing.assert_allclose(got[key], want[key], atol=1e-4 * 200)  # normalized 1e-4 over a ~190 range
    last = policy.timings["last"]
    assert {"preprocess", "model", "postprocess", "total"} <= set(last) and min(last.values()) >= 0
    if name != "compile":  # one compiled graph for the whole call: no backbone / action-head boundary
        assert last["backbone"] + last["action_head"] <= last["model"] + 1e-6
    assert policy.get_action(obs, noise=noise, denoising_steps=2)["action.gripper"].shape == (16, 1)


def test_compile_pads_prompts_so_that_instructions_share_one_graph(policies):
    """A static-shape backend gets every instruction of 1-32 tokens as one prompt length (the warm-up's "warm up" and
    a real one compile once), and the padding, masked and isolated, changes no action."""
    policy, eager = policies["compile"], policies["torch"]
    noise = np.random.default_rng(1).standard_normal((16, 32)).astype(np.float32)
    lengths = {}
    for text in ("warm up", "pick up the red cube on the left and put it into the small bowl next to the plate"):
        obs = {**eager.dummy_observation(), eager.data_config.language_key: [text]}
        inputs = policy.processor(obs)
        lengths[text] = (inputs.input_ids.shape[1], eager.processor(obs).input_ids.shape[1])
        assert inputs.isolate_padding and inputs.attention_mask is not None
        want, got = eager.get_action(obs, noise=noise), policy.get_action(obs, noise=noise)
        for key in want:
            np.testing.assert_allclose(got[key], want[key], atol=1e-4 * 200)
    (padded_a, plain_a), (padded_b, plain_b) = lengths.values()
    assert padded_a == padded_b and plain_a < plain_b <= padded_b
    assert policies["torch"].processor.prompt_step == 1 and policy.backend.prompt_step == 32


@pytest.mark.parametrize("name", GPU_BACKENDS)
def test_gpu_backends_say_what_is_missing(model, name):
    has_gpu, has_trt = torch.cuda.is_available(), importlib.util.find_spec("tensorrt") is not None
    reason = BACKENDS[name].missing(model.device)  # the model is on the CPU: something is always missing
    assert reason
    assert ("CUDA GPU" in reason) == (not has_gpu)
    assert ("TensorRT" in reason) == (name == "tensorrt" and not has_trt)
    with pytest.raises(BackendUnavailable, match=f"backend '{name}' needs "):
        make_backend(name, model)


def test_onnxruntime_padded_batch_and_explicit_folder(model, reference, padded_batch, policies, tmp_path):
    backend = policies["onnxruntime"].backend
    assert "CPUExecutionProvider" in backend.active_providers
    inputs, noise = padded_batch
    assert inputs.attention_mask is not None and inputs.attention_mask.sum(1).unique().numel() == 2
    for steps in (4, 2):
        assert fidelity(backend, reference, inputs, noise, steps)["max_abs_diff"] <= 1e-4
    with pytest.raises(FileNotFoundError, match="vision.onnx does not exist"):
        make_backend("onnxruntime", model, onnx_dir=tmp_path)
    with pytest.raises(ValueError, match="NoSuchExecutionProvider.*not available"):
        make_backend("onnxruntime", model, onnx_dir=backend.onnx_dir, providers=["NoSuchExecutionProvider"])


def test_compile_has_no_graph_breaks_and_matches_eager(model, reference, padded_batch):
    """fullgraph=True turns any graph break into an error; the dynamo-only backend keeps the test fast."""
    backend = make_backend("compile", model, backend="eager", fullgraph=True)
    assert fidelity(backend, reference, *padded_batch, 2)["max_abs_diff"] <= 1e-5


def test_compile_rejects_bad_modes(model):
    with pytest.raises(ValueError, match="'fastest' is not one of"):
        make_backend("compile", model, mode="fastest")
    with pytest.raises(ValueError, match="needs backend='inductor'"):
        make_backend("compile", model, mode="max-autotune", backend="eager")


def test_compile_writes_the_cpp_wrapper_on_cpu_by_default(model):
    """The C++ wrapper (host glue without Python) is the CPU default of plain Inductor, and only of it."""
    assert make_backend("compile", model).cpp_wrapper is True
    assert make_backend("compile", model, cpp_wrapper=False).cpp_wrapper is False
    assert make_backend("compile", model, mode="max-autotune").cpp_wrapper is False
    assert make_backend("compile", model, backend="eager").cpp_wrapper is False
    with pytest.raises(ValueError, match="cpp_wrapper needs backend='inductor' and no mode"):
        make_backend("compile", model, mode="reduce-overhead", cpp_wrapper=True)


def test_unknown_backend_lists_them_all(model):
    with pytest.raises(ValueError, match="compile, cuda-graph, onnxruntime, openvino, tensorrt, torch"):
        make_backend("tvm", model)


def test_fidelity_measures_the_action_difference(reference, padded_batch):
    inputs, noise = padded_batch
    assert fidelity(reference, reference, inputs, noise, 4) == {"max_abs_diff": 0.0, "mean_abs_diff": 0.0}
    shifted = fidelity(lambda *a: reference(*a) + 0.25, reference, inputs, noise, 4)
    assert shifted["max_abs_diff"] == pytest.approx(0.25, abs=1e-6)
    assert shifted["mean_abs_diff"] == pytest.approx(0.25, abs=1e-6)


def test_cuda_graph_signature_tracks_shapes_ids_and_steps(padded_batch):
    inputs, noise = padded_batch
    base = signature(inputs, noise, 4)
    assert signature(inputs.to("cpu", torch.float32), noise, 4) == base
    assert signature(inputs, noise, 2) != base
    for change in ({"embodiment_id": 31}, {"attention_mask": None}, {"input_ids": inputs.input_ids[:1]}):
        assert signature(type(inputs)(**{**vars(inputs), **change}), noise, 4) != base


def test_image_merge_replaces_image_tokens_in_order(model):
    cfg = model.config
    table = model.backbone.eagle_model.language_model.model.embed_tokens.weight
    ids = torch.tensor([[1, cfg.image_token_index, cfg.image_token_index, 2]])
    patches = torch.randn(1, 2, cfg.backbone_embedding_dim)
    merged = merge_image_embeddings(table, ids, patches, cfg.image_token_index)
    torch.testing.assert_close(merged[0, 1:3], patches[0])
    torch.testing.assert_close(merged[0, 0], table[1])
    torch.testing.assert_close(merged[0, 3], table[2])


def test_the_compiled_graph_is_one_aotautograd_caches_between_runs(model, padded_batch):
    """Nothing in the traced call makes AOTAutograd bypass its cache (a grad-mode switch in the RoPE tables did: every
    run redid AOTAutograd, 4.5 s of a 48M second run's 9 s first call). Checked with torch's own rule."""
    from torch._functorch._aot_autograd.autograd_cache import check_cacheable

    graphs = []

    def capture(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    inputs, noise = padded_batch
    with torch.inference_mode():
        make_backend("compile", model, backend=capture)(inputs, noise, 2)
    assert len(graphs) == 1
    check_cacheable(graphs[0])  # raises BypassAOTAutogradCache with the reason


@pytest.mark.slow
def test_a_compiled_model_takes_more_shapes_than_dynamos_default_limit(model):
    """Dynamo allows 8 input shapes per model by default, and with fullgraph=True the 9th is a hard error: the 9th
    step count or batch size a server saw failed. The compiled backends raise the limit."""
    backend = make_backend("compile", model, backend="eager")
    inputs, noise = example_inputs(model.config)
    with torch.inference_mode():
        for steps in range(1, 11):
            backend(inputs, noise, steps)
    assert len(backend.compiled_shapes) == 10


def test_inductor_keeps_its_compiled_code_beside_the_other_artifacts(model, monkeypatch, tmp_path):
    """Inductor's own cache folder (what it reads and writes) is cache_dir()/inductor unless the user named one."""
    from torch._inductor.runtime.cache_dir_utils import cache_dir as inductor_cache_dir, default_cache_dir

    from gr00t_fast.runtime.cache import cache_dir

    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    make_backend("compile", model)
    assert Path(inductor_cache_dir()) == cache_dir() / "inductor"
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", default_cache_dir())  # torch's own default, written by torch
    make_backend("compile", model)
    assert Path(inductor_cache_dir()) == cache_dir() / "inductor"
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    make_backend("compile", model)
    assert Path(inductor_cache_dir()) == tmp_path / "mine"


@pytest.mark.parametrize("name", ["onnxruntime", "openvino"])
@pytest.mark.slow
def test_graph_backends_take_every_configs_state_gr1_sin_cos_and_droid_rotations(tiny_checkpoint, name, tmp_path,
                                                                                  monkeypatch):
    """GR1's sin/cos state (52 values), DROID's 6D rotations and 3 cameras pass the exported graphs: the actions
    equal eager's within 1e-4 of each key's range, binary keys exactly."""
    from embodiment_cases import action_scale, embodiment_checkpoint, observation

    monkeypatch.setenv("GR00T_FAST_CACHE", str(tmp_path / "cache"))
    for config in ("fourier_gr1_arms_only", "oxe_droid"):
        checkpoint, tag = embodiment_checkpoint(tiny_checkpoint, tmp_path / config, config)
        eager, graphs = (load_policy(checkpoint, data_config=config, embodiment_tag=tag, device="cpu", backend=b,
                                     dtype="float32", warmup=False) for b in ("torch", name))
        obs = observation(eager, np.random.default_rng(7))
        noise = np.random.default_rng(8).standard_normal((16, 32)).astype(np.float32)
        want, got = eager.get_action(obs, noise=noise), graphs.get_action(obs, noise=noise)
        for key in want:
            if eager.processor.action_transforms[key].mode == "binary":
                np.testing.assert_array_equal(got[key], want[key], err_msg=f"{config} {key}")
            else:
                np.testing.assert_allclose(got[key], want[key], rtol=0, atol=1e-4 * action_scale(eager, key),
                                           err_msg=f"{config} {key}")


def test_a_new_backend_is_one_class_and_one_registry_entry(tiny_checkpoint, policies, tmp_path, monkeypatch, capsys):
    """A backend nothing else has heard of is one class that loads itself (`configure` before the weights: its
    options from dtype, quantize and the network's size; `load` after: its export from the cache, a compiled-model
    cache keyed by the graphs' content, its say on the precision) and one registry entry: `load_policy`, the
    commands' `--backend` (run's typed flags and help, serve's argparse flags) and the fleet take it without a line
    of theirs changing. A backend reads the load options it runs with alone (no `device` is passed to it; the
    device as its runtime names it, `load_policy`'s `openvino_device`, is the request's `device_name`)."""
    from dataclasses import replace

    from gr00t_fast import __version__
    from gr00t_fast.backends.eager import TorchBackend
    from gr00t_fast.backends.onnxruntime import OnnxRuntimeBackend
    from gr00t_fast.control.run import parse
    from gr00t_fast.export.artifacts import sources_digest
    from gr00t_fast.model.loading import is_complete
    from gr00t_fast.serve.cli import serve_parser
    from gr00t_fast.serve.fleet_model import GRAPH_BUCKETS, FleetModel

    class Tagged(OnnxRuntimeBackend):
        name = "ort-tagged"
        quantize_modes = ("int8",)

        @classmethod
        def configure(cls, request):
            tag = f"{request.quantize}-{request.parameters()}-{request.device_name}"
            return replace(request, dtype="float32", options={"tag": tag})

        @classmethod
        def load(cls, model, request):
            options = cls.load_options(model, request)
            backend = cls(model, **options, cache_dir=request.artifacts.compiled_cache(cls.name, options["onnx_dir"],
                                                                                       options["tag"]))
            backend.decoded = request.decode(torch.zeros(1, 16, 32))
            return backend

        def __init__(self, model, onnx_dir, tag, cache_dir, export_sampler=None):
            super().__init__(model, onnx_dir, export_sampler=export_sampler)
            self.tag, self.cache_dir = tag, cache_dir

    class Padded(TorchBackend):  # no graph backend, yet its batches let the prompt padding through
        name, isolates_padding = "torch-padded", False

    class Static(TorchBackend):  # compiles a graph per input shape, named like no backend the fleet knows
        name, prompt_step = "torch-static", 32

    for cls in (Tagged, Padded, Static):
        monkeypatch.setitem(BACKENDS, cls.name, cls)
    monkeypatch.setenv("GR00T_FAST_CACHE", str(tmp_path))
    policy = load_policy(tiny_checkpoint, device="cpu", backend="ort-tagged", quantize="int8", warmup=False,
                         openvino_device="NPU")
    runner = policy.backend
    parameters = sum(p.numel() for p in load_model(tiny_checkpoint, device="cpu").parameters())
    assert runner.tag == f"int8-{parameters}-NPU" and not is_complete(policy.model)  # host tensors alone
    assert runner.cache_dir == tmp_path / "ort-tagged" / f"{sources_digest(runner.onnx_dir)}-{__version__}-{runner.tag}"
    assert set(runner.decoded) == set(policy.data_config.action_keys)
    obs = policy.dummy_observation()
    noise = np.random.default_rng(0).standard_normal((16, 32)).astype(np.float32)
    want, got = policies["onnxruntime"].get_action(obs, noise=noise), policy.get_action(obs, noise=noise)
    assert all(np.array_equal(got[key], want[key]) for key in want)
    with pytest.raises(ValueError, match=r"quantize='fp8' is not run by backend 'ort-tagged' \(backends that quantize: "
                                         r"torch: int8, fp8; .*ort-tagged: int8"):
        load_policy(tiny_checkpoint, device="cpu", backend="ort-tagged", quantize="fp8", warmup=False)

    assert parse(["--backend", "ort-tagged", "--model_path", str(tiny_checkpoint)]).backend == "ort-tagged"
    with pytest.raises(ValueError, match="--backend: expected one of torch, .*, ort-tagged, torch-padded, torch-static, "
                                         "got 'tvm'"):
        parse(["--backend", "tvm"])
    assert serve_parser().parse_args(["--backend=torch-static"]).backend == "torch-static"
    assert "ort-tagged,torch-padded,torch-static}" in serve_parser().format_help()
    with pytest.raises(SystemExit):
        parse(["--help"])
    assert "ort-tagged,torch-padded,torch-static}" in capsys.readouterr().out

    with pytest.raises(ValueError, match="backend 'ort-tagged' cannot isolate; use one of: torch, compile, cuda-graph, "
                                         "torch-static$"):
        FleetModel(policy)
    with pytest.raises(ValueError, match="backend 'torch-padded' cannot isolate"):
        FleetModel(load_policy(tiny_checkpoint, device="cpu", backend="torch-padded", warmup=False))
    static = FleetModel(load_policy(tiny_checkpoint, device="cpu", backend="torch-static", warmup=False))
    assert static.buckets == GRAPH_BUCKETS and FleetModel(policies["torch"]).buckets == ()


class StubArtifacts:
    """`LoadRequest.artifacts` answering what it was asked, to see where a backend's folder comes from."""

    def given(self, folder, exports, runner):
        return ("given", Path(folder), exports, runner)

    def onnx(self, model):
        return ("cached onnx", None)

    def engines(self, model, name, precision):
        return ("built", name, precision)


@pytest.mark.parametrize("name, option", [("onnxruntime", "onnx_dir"), ("tensorrt", "engine_dir")])
def test_a_graph_backend_runs_the_users_folder_checked_else_the_cache(model, name, option):
    """One rule for every graph backend's folder (`graph.given_folder`): `backend_dir`, else the folder option, is the
    user's, checked against the exports the backend runs; without either, the checkpoint's, from the cache."""
    from gr00t_fast.backends import LoadRequest

    cls = BACKENDS[name]
    given = ("given", Path("mine"), cls.exports, f"backend {name!r}")
    for request in (LoadRequest(Path("ck"), backend_dir=Path("mine"), artifacts=StubArtifacts()),
                    LoadRequest(Path("ck"), options={option: "mine"}, artifacts=StubArtifacts())):
        assert cls.load_options(model, request) == {option: given}
    cached = cls.load_options(model, LoadRequest(Path("ck"), options={"precision": "fp16"}, artifacts=StubArtifacts()))
    assert cached[option] == (("built", name, "fp16") if name == "tensorrt" else "cached onnx")


def test_export_finds_the_runner_of_each_target_in_the_registry(model, policies, tiny_checkpoint, tmp_path,
                                                                 monkeypatch):
    """export checks INT8 graphs with, and builds engines for, the first registered backend running that target
    (`Backend.exports`): a backend registered ahead of the others is the one export uses, no export line naming it."""
    from gr00t_fast.backends import export_runner, registry
    from gr00t_fast.backends.onnxruntime import OnnxRuntimeBackend
    from gr00t_fast.export.int8 import action_error
    from gr00t_fast.export.tensorrt import build_engines

    assert export_runner("int8") is export_runner("onnx") is BACKENDS["onnxruntime"]
    assert export_runner("tensorrt") is BACKENDS["tensorrt"]
    with pytest.raises(ValueError, match="no backend runs export target 'tflite'; targets run: int8, onnx, tensorrt$"):
        export_runner("tflite")
    built = []

    class First(OnnxRuntimeBackend):
        name = "ort-first"

        def __init__(self, model, onnx_dir, **options):
            super().__init__(model, onnx_dir, **options)
            built.append(Path(onnx_dir))

    class Elsewhere(Backend):  # runs TensorRT engines on a machine nobody has
        name, exports = "engines-elsewhere", ("tensorrt",)

        @classmethod
        def missing(cls, device):
            return "a machine nobody has"

        def __call__(self, inputs, noise, num_steps):
            raise AssertionError("never loaded")

    monkeypatch.setattr(registry, "BACKENDS", {First.name: First, Elsewhere.name: Elsewhere, **BACKENDS})
    folder = policies["onnxruntime"].backend.onnx_dir
    steps = model.config.num_inference_timesteps
    assert action_error(model, folder, example_inputs(model.config), steps)["max_abs_diff"] <= 1e-4
    assert built == [folder]
    with pytest.raises(RuntimeError, match="^building TensorRT engines needs a machine nobody has$"):
        build_engines(tiny_checkpoint, tmp_path / "engines")


def test_rtc_refusals_name_the_backends_that_run_it(policies, monkeypatch):
    """A backend without real-time chunking, in-process or in the fleet, says so in one line naming the registered
    backends that run it (`without_rtc`), a new one among them."""
    from gr00t_fast.backends.eager import TorchBackend
    from gr00t_fast.model.rtc import RtcRequest
    from gr00t_fast.serve.fleet_model import FleetModel

    class Chunking(TorchBackend):
        name = "torch-chunking"

    monkeypatch.setitem(BACKENDS, Chunking.name, Chunking)
    refusal = r"backend 'compile' does not support real-time chunking \(rtc\); use one of: torch, torch-chunking$"
    policy = policies["compile"]
    rtc = RtcRequest("guided", np.zeros((10, 6), np.float32), 1)
    inputs, noise = example_inputs(policy.model.config)
    with pytest.raises(ValueError, match=refusal):
        policy.backend.rtc(inputs, noise, 4, rtc)
    (result,) = FleetModel(policy)([policy.dummy_observation()], [None], ["arm"], [rtc])
    assert re.fullmatch(f"ValueError: {refusal}", result)


def test_the_old_public_names_still_work(model, policies, tiny_checkpoint):
    """`gr00t_fast.export.ensure_artifacts` (deprecated: a backend loads itself) gives a backend's constructor options
    as a load makes them; `policy.config.BackendName` is the registry's names as a Literal type."""
    import typing

    from gr00t_fast.export import ensure_artifacts
    from gr00t_fast.policy.config import BackendName

    folder = policies["onnxruntime"].backend.onnx_dir
    with pytest.warns(DeprecationWarning, match="ensure_artifacts is deprecated: a backend loads itself"):
        options = ensure_artifacts(BACKENDS["onnxruntime"], model, tiny_checkpoint, cameras=1, backend_dir=folder)
    assert options == {"onnx_dir": folder}
    with pytest.warns(DeprecationWarning):
        assert ensure_artifacts(BACKENDS["compile"], model, tiny_checkpoint, cameras=1,
                                options={"backend": "eager"}) == {"backend": "eager"}
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="backend 'torch' runs the checkpoint's"):
        ensure_artifacts(BACKENDS["torch"], model, tiny_checkpoint, cameras=1, backend_dir=folder)
    assert typing.get_args(BackendName) == tuple(BACKENDS)



def off_by(offset: float, batch: int | None = None):
    """A torch.compile backend whose code is off by `offset` in every floating output (for outputs of `batch` rows
    only, where given): a faulty compiler, planted."""
    def compiler(gm, example_inputs):
        def run(*args):
            out = gm.forward(*args)
            if batch is not None and out[0].shape[0] != batch:
                return out
            return type(out)(o + offset if o.is_floating_point() else o for o in out)
        return run
    return compiler


def quiet(call):
    """`call()` with any RuntimeWarning raised as an error; its result."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        return call()


def test_a_compiled_call_that_disagrees_with_eager_is_named_and_eager_runs(model, reference, padded_batch):
    """Inductor on an H100 moved NVIDIA's reference cases by 0.3-0.4 in float32 where the eager kernels were 2e-6 off
    (benchmarks/results/gpu): a compiled call is checked against the model's own kernels on each signature's first
    call; where it is off, one warning names it and the model's own kernels run, for that call and every later one."""
    inputs, noise = padded_batch
    backend = make_backend("compile", model, backend=off_by(0.5))
    with torch.inference_mode(), pytest.warns(RuntimeWarning, match=r"compile: the compiled call's actions differ "
                                              r"from the model's own kernels by 0\.5 .*own kernels run from now on"):
        actions = backend(inputs, noise, 2)
    torch.testing.assert_close(actions, reference(inputs, noise, 2), atol=1e-5, rtol=0)
    assert backend.whole_call is model and "0.5" in backend.fallback
    one, one_noise = example_inputs(model.config)  # another signature: the model's own kernels, no second warning
    with torch.inference_mode():
        torch.testing.assert_close(quiet(lambda: backend(one, one_noise, 2)), reference(one, one_noise, 2), atol=1e-5,
                                   rtol=0)
    assert len(backend.eager_check.differences) == 1


def test_each_signature_is_checked_once(model, padded_batch):
    """The check runs on a signature's first call only: a second call of it, nothing more; a new one, once more."""
    inputs, noise = padded_batch
    backend = make_backend("compile", model, backend=off_by(0.0))
    with torch.inference_mode():
        for call in ((inputs, noise, 2), (inputs, noise, 2), (inputs, noise, 3)):
            quiet(lambda: backend(*call))
    assert len(backend.eager_check.differences) == 2 and backend.fallback is None


@pytest.mark.parametrize("offset, kept", [(1e-4, True), (0.01, False), (float("nan"), False)])
def test_float32_agrees_within_1e_3_and_a_nan_never(model, padded_batch, offset, kept):
    """float32 agrees within 1e-3 (a compiler's own rounding: ~1e-6 measured); 0.01 is a fault there; a NaN never
    agrees."""
    inputs, noise = padded_batch
    backend = make_backend("compile", model, backend=off_by(offset))
    with torch.inference_mode(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        actions = backend(inputs, noise, 2)
    assert (backend.fallback is None) == kept and (backend.whole_call is not model) == kept
    assert any(w.category is RuntimeWarning for w in caught) != kept and torch.isfinite(actions).all()


def test_rounded_arithmetic_agrees_within_0_1(tiny_checkpoint, model, padded_batch, monkeypatch):
    """bf16, TF32 or int8 matmuls round by hundredths (bf16 0.012, int8 0.016 against eager at 48M on a CPU):
    0.01 is kept there, float32 at full precision bounds it at 1e-3, fp8's flipped levels at 0.2."""
    from gr00t_fast.backends.compiled import AGREE_FLOAT32, AGREE_FP8, AGREE_ROUNDED, EagerCheck
    from gr00t_fast.model.quantize import Bf16Linear, QuantizedLinear

    bf16 = load_model(tiny_checkpoint, device="cpu", dtype=torch.bfloat16)
    inputs, noise = padded_batch
    backend = make_backend("compile", bf16, backend=off_by(0.01))
    with torch.inference_mode():
        quiet(lambda: backend(inputs.to("cpu", torch.bfloat16), noise, 2))
    assert backend.fallback is None and len(backend.eager_check.differences) == 1
    assert EagerCheck("compile", model).bound() == AGREE_FLOAT32
    with monkeypatch.context() as patched:
        patched.setattr(torch, "get_float32_matmul_precision", lambda: "high")  # TF32 on a GPU
        assert EagerCheck("compile", model).bound() == AGREE_ROUNDED
    kept = load_model(tiny_checkpoint, device="cpu", dtype=torch.float32)
    name, linear = next((n, m) for n, m in kept.named_modules() if isinstance(m, torch.nn.Linear))
    parent = kept.get_submodule(name.rpartition(".")[0])
    setattr(parent, name.rpartition(".")[2], Bf16Linear(linear))  # a layer kept in bf16 by --quantize int8
    assert EagerCheck("compile", kept).bound() == AGREE_ROUNDED
    name, linear = next((n, m) for n, m in kept.named_modules() if type(m) is torch.nn.Linear)
    parent = kept.get_submodule(name.rpartition(".")[0])
    setattr(parent, name.rpartition(".")[2], QuantizedLinear(linear, "fp8"))
    assert EagerCheck("compile", kept).bound() == AGREE_FP8


def test_a_cuda_graph_of_compiled_kernels_that_disagree_is_captured_again_from_eager(model, reference, padded_batch,
                                                                                      monkeypatch):
    """The cuda-graph backend checks each signature's first replay; where it is off, every graph is dropped (they hold
    the compiled kernels) and later ones are captured from the model's own kernels. The CUDA graph (hardware) is stood
    in for by replaying the captured call on the host; the backend's own bookkeeping runs as on a GPU."""
    from types import SimpleNamespace

    from gr00t_fast.backends.compiled import whole_call_args
    from gr00t_fast.backends.cuda_graph import CapturedGraph, CudaGraphBackend, _clone

    class HostGraph(CudaGraphBackend):
        def capture(self, inputs, noise, num_steps):
            static, static_noise = _clone(inputs), noise.clone()
            self.captured_from.append(self.whole_call)
            run, call = self.whole_call, (lambda: run(*whole_call_args(self.model, static, static_noise, num_steps)))
            output = call()
            return CapturedGraph(SimpleNamespace(replay=lambda: output.copy_(call())), static, static_noise, output)

    pools = iter(range(100))
    monkeypatch.setattr(torch.cuda, "graph_pool_handle", lambda: next(pools))
    backend = HostGraph(model)
    backend.captured_from, backend.pools_used = [], []
    capture = backend.capture
    backend.capture = lambda *args: backend.pools_used.append(backend.pool) or capture(*args)
    backend.whole_call = compiled = torch.compile(model, backend=off_by(0.5, batch=2), fullgraph=True)
    one, one_noise = example_inputs(model.config)
    two, two_noise = padded_batch
    with torch.inference_mode():
        quiet(lambda: backend(one, one_noise, 2))  # a graph of compiled kernels that agree: kept
        assert len(backend.graphs) == 1
        with pytest.warns(RuntimeWarning, match=r"cuda-graph: the compiled call's actions differ .* by 0\.5"):
            actions = backend(two, two_noise, 2)
        torch.testing.assert_close(actions, reference(two, two_noise, 2), atol=1e-5, rtol=0)
        assert not backend.graphs  # the batch of one's graph went too: compiled kernels
        torch.testing.assert_close(quiet(lambda: backend(one, one_noise, 2)), reference(one, one_noise, 2),
                                   atol=1e-5, rtol=0)
    assert backend.captured_from == [compiled, compiled, model] and len(backend.graphs) == 1
    # a pool whose graphs are all gone takes no capture on a GPU (torch 2.11, H100: an allocator assert): a new one
    assert backend.pools_used == [0, 0, 1]


def test_inductor_compiles_without_comprehensive_padding_in_every_mode(model, monkeypatch):
    """Inductor's comprehensive padding moved the backbone's features by 4.5 and NVIDIA's reference actions by 0.33 on
    an H100, without it 1.7e-6 (benchmarks/results/gpu/h100_2026-11-26_evening_runs.md); Inductor leaves it off on a CPU
    itself. Every Inductor compile here turns it off, each mode's own options kept."""
    from gr00t_fast.backends.cuda_graph import CudaGraphBackend

    asked, compile_ = [], torch.compile
    monkeypatch.setattr(torch, "compile", lambda *args, **kwargs: asked.append(kwargs) or compile_(*args, **kwargs))
    monkeypatch.setattr(torch.cuda, "graph_pool_handle", lambda: None)
    for mode in (None, "reduce-overhead", "max-autotune"):
        make_backend("compile", model, mode=mode)
    CudaGraphBackend(model)
    make_backend("compile", model, backend="aot_eager")  # not Inductor: no options
    assert [kwargs["options"]["comprehensive_padding"] for kwargs in asked[:4]] == [False] * 4
    assert asked[0]["options"]["cpp_wrapper"]  # the CPU's default (the model is on the CPU)
    assert asked[1]["options"]["triton.cudagraphs"] and asked[2]["options"]["max_autotune"]
    assert not any("mode" in kwargs for kwargs in asked) and "options" not in asked[4]
