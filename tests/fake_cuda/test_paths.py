"""Every CUDA path of the full-size N1.5, end to end on fake CUDA (bf16 and fp16): `Gr00tPolicy.get_action` from a
real observation, each call checked by `Trace.check` (no device mismatch, no host sync / host-to-device copy /
float32 matmul inside the model call or the CUDA graph capture, outputs on cuda:0 in float32, only justified syncs
outside)."""

import numpy as np
import pytest
import torch

from conftest import CPU_BUILD, WHY_SKIPPED, DTYPES, on_torch_thread
from fakes import DeviceOps
from gr00t_fast.dev.fake_cuda import CAPTURE_REGION
from gr00t_fast.dev.gpu_trace import observation, trace_call
from gr00t_fast.model.quantize import QuantizedLinear
from gr00t_fast.model.rtc import RtcRequest
from gr00t_fast.serve.fleet_model import GRAPH_BUCKETS, GRAPH_PROMPT_STEP, FleetModel

if CPU_BUILD:
    pytest.skip(WHY_SKIPPED, allow_module_level=True)

DTYPE_IDS = list(DTYPES)


def traced(cuda, policy, call, name=""):
    trace = on_torch_thread(trace_call, cuda, policy, call, name)
    trace.check()
    return trace


def synced(trace):
    """The host syncs outside the model call, as "op at file" (line numbers left out)."""
    return [sync.split(":")[0] for sync in trace.syncs_outside]


@pytest.mark.parametrize("pipeline", ["isaac", "lerobot"])
def test_image_arithmetic_stays_on_the_host(cuda, policies, pipeline):
    """The image transforms are exact on the host alone (CUDA divides by a scalar as a multiply by its reciprocal:
    4.2e-3 off NVIDIA on an H200): on a CUDA device the pixels only arrive there, by one copy."""
    policy = policies(torch.bfloat16)
    processor, obs = policy.processor, observation(policy)

    def pixels():
        processor.pipeline, before = pipeline, processor.pipeline
        try:
            with DeviceOps() as seen:
                return processor.pixel_values(obs, 1), seen.ops
        finally:
            processor.pipeline = before

    out, ops = on_torch_thread(pixels)
    assert out.device == torch.device("cuda:0") and out.dtype == torch.bfloat16 and ops == ["_to_copy.default"]


def action_shapes(actions):
    return {key: (value.shape, value.dtype) for key, value in actions.items()}


@pytest.mark.parametrize("dtype", DTYPE_IDS)
@pytest.mark.parametrize("data_config, cameras", [("so100", 1), ("so100_dualcam", 2)])
def test_torch_backend_get_action_from_a_real_observation(cuda, policies, dtype, data_config, cameras):
    policy = policies(DTYPES[dtype], data_config=data_config)
    assert len(policy.video_resolution) == cameras and policy.device == torch.device("cuda:0")
    trace = traced(cuda, policy, lambda: policy.get_action(observation(policy)), f"torch {dtype} {cameras} camera(s)")
    assert trace.outputs == [("cuda:0", "torch.float32", (1, 16, 32))]
    assert action_shapes(trace.result) == {"action.single_arm": ((16, 5), np.float32),
                                           "action.gripper": ((16, 1), np.float32)}
    assert synced(trace) == ["to.device at policy.py"]  # the actions' one copy to the host
    assert trace.weights_bytes > 2.4e9 * 2 * 0.95  # 2.4B parameters in 16 bits, never allocated


@pytest.mark.parametrize("dtype", DTYPE_IDS)
def test_batched_observation_and_seeded_noise(cuda, policies, dtype):
    """A batch of three prompts of different lengths (left-padded), noise from the policy's seeded generator."""
    policy = policies(DTYPES[dtype])
    trace = traced(cuda, policy, lambda: policy.get_action(observation(policy, batch=3)), f"batch 3 {dtype}")
    assert trace.outputs == [("cuda:0", "torch.float32", (3, 16, 32))]
    assert trace.result["action.single_arm"].shape == (3, 16, 5)


@pytest.mark.parametrize("dtype", DTYPE_IDS)
@pytest.mark.parametrize("mode", ["freeze", "guided-identity"])
def test_rtc(cuda, policies, dtype, mode):
    policy = policies(DTYPES[dtype])
    request = RtcRequest(mode, np.linspace(-0.5, 0.5, 10 * 6, dtype=np.float32).reshape(10, 6), inference_delay=3)
    trace = traced(cuda, policy, lambda: policy.get_action(observation(policy), rtc=request), f"rtc {mode} {dtype}")
    assert trace.outputs == [("cuda:0", "torch.float32", (1, 16, 32))]
    assert trace.result["rtc.normalized_action"].shape == (16, 6)


def test_guided_rtc_vjp_is_not_traceable(cuda, policies):
    """Guided RTC's VJP (`torch.autograd.grad`) needs a CUDA context even on fake tensors: it is the one path the
    lane cannot trace (everything before the backward pass is traced by the guided-identity test)."""
    policy = policies(torch.bfloat16)
    request = RtcRequest("guided", np.zeros((10, 6), np.float32), inference_delay=3)
    with pytest.raises(RuntimeError, match="hasPrimaryContext"):
        on_torch_thread(trace_call, cuda, policy, lambda: policy.get_action(observation(policy), rtc=request))


@pytest.mark.parametrize("dtype, quantize", [("bf16", "int8"), ("fp16", "int8"), ("bf16", "fp8")])
def test_quantized_matmuls(cuda, policies, dtype, quantize):
    """On a GPU int8 measures its activations on one example call, its weights at their nearest levels (fitting them
    to synthetic scenes is measured on CPUs only; GPTQ's loop over every column would also not end in this lane)."""
    policy = policies(DTYPES[dtype], quantize=quantize)
    trace = traced(cuda, policy, lambda: policy.get_action(observation(policy)), f"{quantize} {dtype}")
    assert trace.outputs == [("cuda:0", "torch.float32", (1, 16, 32))]
    layers = [m for m in policy.model.modules() if isinstance(m, QuantizedLinear)]
    assert layers and not any(layer.fitted for layer in layers)


def test_fp8_in_fp16_is_refused_in_one_line(cuda, policies):
    with pytest.raises(ValueError, match="fp8 matmuls .* bfloat16 only on CUDA"):
        policies(torch.float16, quantize="fp8")


@pytest.mark.parametrize("dtype", DTYPE_IDS)
def test_cuda_graph_backend_captured_region(cuda, policies, dtype):
    """The whole call as the cuda-graph backend captures it (eager kernels inside: Inductor needs a GPU; the compiled
    graph is traced by `test_compile_is_one_graph_on_cuda`), the capture context recording what runs in it."""
    policy = policies(DTYPES[dtype], "cuda-graph", compiled=False, warmup_iters=1)
    trace = traced(cuda, policy, lambda: policy.get_action(observation(policy)), f"cuda-graph {dtype}")
    assert cuda.record.regions[CAPTURE_REGION].name == CAPTURE_REGION
    assert trace.outputs == [("cuda:0", "torch.float32", (1, 16, 32))]
    captured = next(iter(policy.backend.graphs.values()))
    assert captured.graph.replays == 1 and captured.output.device == torch.device("cuda:0")


@pytest.mark.parametrize("dtype, rows", [("bf16", rows) for rows in GRAPH_BUCKETS] + [("fp16", GRAPH_BUCKETS[-1])])
def test_fleet_batched_model_call_at_each_bucket(cuda, policies, dtype, rows):
    """The fleet's batched model call: requests of different prompt lengths collated, padded to the bucket (prompts
    to a multiple of 64), captured as a CUDA graph per bucket (bf16; fp16 at the largest)."""
    policy = policies(DTYPES[dtype], "cuda-graph", compiled=False, warmup_iters=1)
    fleet = FleetModel(policy)
    requests = rows if rows <= 2 else rows // 2 + 1  # padded up to `rows` (from 3 up)
    observations = [observation(policy, instruction="Pick up the cube" + " now" * i, seed=i) for i in range(requests)]
    trace = traced(cuda, policy, lambda: fleet(observations, [None] * requests, [f"robot{i}" for i in range(requests)]),
                   f"fleet {rows} rows")
    assert trace.outputs == [("cuda:0", "torch.float32", (rows, 16, 32))] and fleet.batch_rows == {rows: 1}
    assert all(isinstance(r, dict) and r["action.single_arm"].shape == (16, 5) for r in trace.result)
    key = next(reversed(policy.backend.graphs))
    prompt = dict((k[0], k[1:]) for k in key[2:])["input_ids"][0]
    assert prompt[0] == rows and (requests == rows or prompt[1] % GRAPH_PROMPT_STEP == 0)
    assert synced(trace) == ["to.device at fleet_model.py"]  # the batch's one copy to the host


@pytest.mark.parametrize("dtype", DTYPE_IDS)
def test_compile_is_one_graph_on_cuda(cuda, policies, dtype):
    """The compile backend's whole call traced by dynamo on fake CUDA inputs with fullgraph=True: one graph, no
    break; then that graph (what Inductor would compile) run on fake CUDA inside a capture region and checked."""
    from gr00t_fast.backends.compiled import CompiledBackend
    from gr00t_fast.dev.gpu_trace import trace_compiled

    policy = policies(DTYPES[dtype])
    graphs, trace = on_torch_thread(trace_compiled, cuda, CompiledBackend, policy)
    assert len(graphs) == 1
    trace.check()
    assert trace.outputs == [("cuda:0", "torch.float32", (1, 16, 32))]
