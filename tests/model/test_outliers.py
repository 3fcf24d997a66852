"""`make-checkpoint --outliers`: the quantized stacks' Linear inputs carry a few outlier channels, the function stays
that of the plain checkpoint of the same seed (`gr00t_fast.model.outliers`)."""

import json

import pytest
import torch

from gr00t_fast.backends import make_backend
from gr00t_fast.dev.make_checkpoint import main as make_checkpoint_main
from gr00t_fast.model import Gr00tConfig, example_inputs, load_model
from gr00t_fast.model.outliers import CHANNELS, OutlierChannels
from gr00t_fast.model.provenance import PROVENANCE_FILE
from gr00t_fast.model.quantize import transformer_stacks

RATIO = 20.0  # an outlier channel's largest input against the median channel's


@pytest.fixture(scope="module")
def outlier_checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt") / "outliers"
    assert make_checkpoint_main(["--size", "tiny", "--out", str(out), "--outliers"]) == 0  # seed 0, as tiny_checkpoint
    return out


@pytest.fixture(scope="module")
def plain_run(tiny_checkpoint):
    return linear_inputs(tiny_checkpoint)


@pytest.fixture(scope="module")
def outlier_run(outlier_checkpoint):
    return linear_inputs(outlier_checkpoint)


def linear_inputs(checkpoint):
    """fp32 actions of one call, and {stack: {layer: each input channel's largest magnitude / the median's}}."""
    model = load_model(checkpoint, device="cpu", dtype=torch.float32)
    absmax, hooks = {}, []
    for stack, module in transformer_stacks(model).items():
        for name, layer in module.named_modules():
            if isinstance(layer, torch.nn.Linear):
                def seen(_, args, __, key=(stack, name)):
                    x = args[0].reshape(-1, args[0].shape[-1]).abs().amax(0)
                    absmax[key] = x if key not in absmax else torch.maximum(absmax[key], x)
                hooks.append(layer.register_forward_hook(seen))
    actions = make_backend("torch", model)(*example_inputs(model.config), 4)
    for hook in hooks:
        hook.remove()
    ratios = {stack: {} for stack in transformer_stacks(model)}
    for (stack, name), x in absmax.items():
        ratios[stack][name] = x / x.median()
    return actions, ratios


def test_the_stacks_linear_inputs_carry_the_drawn_outlier_channels_and_the_plain_checkpoint_s_none(
        outlier_checkpoint, plain_run, outlier_run):
    drawn = OutlierChannels.draw(Gr00tConfig.from_checkpoint(outlier_checkpoint), seed=0).channels
    _, plain = plain_run
    assert max(r.max().item() for layers in plain.values() for r in layers.values()) < RATIO / 2
    _, ratios = outlier_run
    for stack, layers in ratios.items():
        outlying = {name: set(torch.nonzero(r >= RATIO).flatten().tolist()) for name, r in layers.items()}
        outlying = {name: channels for name, channels in outlying.items() if channels}
        assert len(outlying) >= 2, (stack, outlying)  # the attention's and the MLP's (the DiT: output) inputs
        assert all(channels == set(drawn[stack][0].tolist()) for channels in outlying.values()), (stack, outlying)
        assert len(drawn[stack][0]) == CHANNELS and max(r.max().item() for r in layers.values()) < 150


def test_the_outliers_change_the_activations_not_the_function(outlier_checkpoint, plain_run, outlier_run):
    """Each scaled norm channel is divided back in the next Linear's columns: the same seed's actions, to float
    rounding (5e-7 here)."""
    (actions, _), (plain, _) = outlier_run, plain_run
    assert actions.isfinite().all() and actions.std() > 0.5  # actions of a random network, not a collapsed one
    torch.testing.assert_close(actions, plain, atol=1e-5, rtol=0)
    assert json.loads((outlier_checkpoint / PROVENANCE_FILE).read_text())["outliers"].startswith(f"{CHANNELS} channels")


def test_the_channels_are_fixed_by_the_seed(tiny_checkpoint):
    config = Gr00tConfig.from_checkpoint(tiny_checkpoint)
    same, other = (OutlierChannels.draw(config, seed).channels for seed in (3, 4))
    again = OutlierChannels.draw(config, 3).channels
    assert all(torch.equal(same[s][i], again[s][i]) for s in same for i in (0, 1))
    assert not all(torch.equal(same[s][0], other[s][0]) for s in same)
