"""The whole GR00T N1.5 network: Eagle backbone + flow-matching action head."""

from typing import TYPE_CHECKING

import torch
from torch import nn

from gr00t_fast.model.action_head import EmbodimentId, FlowMatchingActionHead, StepTables
from gr00t_fast.model.config import Gr00tConfig
from gr00t_fast.model.eagle import EagleBackbone

if TYPE_CHECKING:
    from gr00t_fast.model.deferred import DeferredWeights
    from gr00t_fast.model.precision import Precision


class Gr00tN15(nn.Module):
    """Parameter names match the official checkpoint (`backbone.*`, `action_head.*`)."""

    precision: "Precision | None" = None  # what it runs in and why, set by `load_model`
    # the weights `load_model(..., defer=...)` left unread, read by whoever quantizes the model (then None)
    deferred_weights: "DeferredWeights | None" = None

    def __init__(self, config: Gr00tConfig):
        super().__init__()
        self.config = config
        self.backbone = EagleBackbone(config.vision, config.llm, config.image_token_index)
        self.action_head = FlowMatchingActionHead(config)

    @property
    def device(self) -> torch.device:
        return self.action_head.future_tokens.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.action_head.future_tokens.weight.dtype

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        pixel_values: torch.Tensor,
        state: torch.Tensor,
        embodiment_id: EmbodimentId,
        noise: torch.Tensor,
        num_steps: int,
        tables: StepTables | None = None,
        isolate_padding: bool = False,
    ) -> torch.Tensor:
        """Prompt ids (B,L), mask (B,L) or None (no padding), pixels (B*V,3,224,224), state (B,1,64),
        embodiment id, noise (B,horizon,action_dim) -> normalized actions (B,horizon,action_dim) float32.
        `tables`: the action head's `step_tables` (a compiled caller passes them in). `isolate_padding`: see
        `ModelInputs`."""
        features = self.backbone(input_ids, attention_mask, pixel_values)
        return self.action_head.get_action(features, state, embodiment_id, noise, num_steps, tables,
                                           attention_mask if isolate_padding else None)
