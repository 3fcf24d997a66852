"""A test of the lane: planted GPU bugs make it fail. A CPU tensor planted in preprocessing meets the CUDA weights
(the fake mode raises the device mismatch a GPU would); an `.item()` planted inside the model is a host sync inside
the model call and inside the CUDA graph capture (`Trace.check` raises, naming the source line)."""

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorDeviceMismatchError

from conftest import CPU_BUILD, WHY_SKIPPED, on_torch_thread
from gr00t_fast.dev.fake_cuda import TraceError
from gr00t_fast.dev.gpu_trace import observation, trace_call
from gr00t_fast.model.action_head import DiTBlock
from gr00t_fast.policy.processor import Processor

if CPU_BUILD:
    pytest.skip(WHY_SKIPPED, allow_module_level=True)


def test_a_cpu_tensor_planted_in_preprocessing_fails_the_lane(cuda, policies, monkeypatch):
    policy = policies(torch.bfloat16)
    state = Processor.state
    monkeypatch.setattr(Processor, "state", lambda self, obs, batch: state(self, obs, batch).cpu())
    with pytest.raises(FakeTensorDeviceMismatchError, match="cpu"):
        on_torch_thread(trace_call, cuda, policy, lambda: policy.get_action(observation(policy)))


@pytest.mark.parametrize("backend, region", [("torch", "model call"), ("cuda-graph", "cuda-graph capture")])
def test_an_item_planted_inside_the_model_fails_the_lane(cuda, policies, monkeypatch, backend, region):
    options = {"compiled": False, "warmup_iters": 1} if backend == "cuda-graph" else {}
    policy = policies(torch.bfloat16, backend, **options)
    if backend == "cuda-graph":
        policy.backend.graphs.clear()  # capture again, with the planted bug
    forward = DiTBlock.forward

    def planted(self, x, *args, **kwargs):
        if x.abs().max().item() > 1e30:  # a value read on the host
            raise AssertionError("unreachable")
        return forward(self, x, *args, **kwargs)

    monkeypatch.setattr(DiTBlock, "forward", planted)
    trace = on_torch_thread(trace_call, cuda, policy, lambda: policy.get_action(observation(policy)))
    with pytest.raises(TraceError, match=rf"host sync inside '{region}': item.default at test_planted.py:\d+ planted"):
        trace.check()


def test_a_float32_matmul_planted_in_a_bf16_model_fails_the_lane(cuda, policies, monkeypatch):
    """A silent upcast (the MLP's down projection computed in float32, then cast back) is a defect in bf16."""
    from gr00t_fast.model.eagle import Qwen3MLP

    policy = policies(torch.bfloat16)

    def upcast(self, x):
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        hidden = torch.nn.functional.silu(gate) * up
        return torch.nn.functional.linear(hidden.float(), self.down_proj.weight.float()).to(x.dtype)

    monkeypatch.setattr(Qwen3MLP, "forward", upcast)
    trace = on_torch_thread(trace_call, cuda, policy, lambda: policy.get_action(observation(policy)))
    twelve_layers = r"linear in float32/float32 \(12x\) inside 'model call' .* at test_planted.py:\d+ upcast"
    with pytest.raises(TraceError, match=twelve_layers):
        trace.check()
