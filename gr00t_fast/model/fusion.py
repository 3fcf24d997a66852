"""Projections fused at load: one matmul where the checkpoint has several on the same input (SigLIP's and Qwen3's
q/k/v, Qwen3's gate/up). Checkpoints keep NVIDIA's names; a module that fuses declares
`fused = {fused child: ((checkpoint child, rows), ...)}` and these functions map between the two layouts."""

import torch
from torch import nn

Parts = tuple[tuple[str, int], ...]  # (checkpoint name, rows) of each part, in the fused order


def fused_names(model: nn.Module) -> dict[str, Parts]:
    """Every fused parameter's name -> its parts' checkpoint names and rows (weights and biases alike)."""
    names: dict[str, Parts] = {}
    for prefix, module in model.named_modules():
        base = f"{prefix}." if prefix else ""
        for child, parts in getattr(module, "fused", {}).items():
            for param, _ in getattr(module, child).named_parameters(recurse=False):
                names[f"{base}{child}.{param}"] = tuple((f"{base}{part}.{param}", rows) for part, rows in parts)
    return names


def part_names(name: str, fused: dict[str, Parts]) -> tuple[str, ...]:
    """The checkpoint names of the model's tensor `name` (`fused`: the model's `fused_names`): its parts where it is
    fused, else itself."""
    return tuple(part for part, _ in fused.get(name, ((name, 0),)))


def checkpoint_shapes(model: nn.Module) -> dict[str, torch.Size]:
    """The tensor names and shapes of `model`'s checkpoint: its state dict with fused tensors listed as parts."""
    shapes = {name: tensor.shape for name, tensor in model.state_dict().items()}
    for fused, parts in fused_names(model).items():
        shape = shapes.pop(fused)
        shapes.update({name: torch.Size([rows, *shape[1:]]) for name, rows in parts})
    return shapes


def fuse_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A checkpoint-layout state dict turned into `model`'s layout, in place (and returned): each fused tensor is its
    parts concatenated, and the parts leave the dict as it is made, so a load holds one fused tensor's parts twice
    at most, never all of them. A fused tensor none of whose parts is in `state` is left out (a deferred weight,
    `gr00t_fast.model.deferred`)."""
    for fused, parts in fused_names(model).items():
        if any(name in state for name, _ in parts):
            state[fused] = torch.cat([state.pop(name) for name, _ in parts])
    return state


def split_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of `fuse_state_dict`: `model`-layout tensors (any subset) in the checkpoint's layout."""
    state = dict(state)
    for fused, parts in fused_names(model).items():
        if fused in state:
            state.update(zip((name for name, _ in parts), state.pop(fused).split([rows for _, rows in parts])))
    return state
