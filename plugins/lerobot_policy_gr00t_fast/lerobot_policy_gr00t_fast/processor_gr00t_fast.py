"""LeRobot's processor pipelines for `gr00t_fast`: only batching and device moves. Normalization, image
preprocessing and tokenization are GR00T's own and run inside gr00t-fast, from the checkpoint's statistics."""

from typing import Any

import torch
from lerobot.processor import (
    AddBatchDimensionProcessorStep,
    DeviceProcessorStep,
    PolicyAction,
    PolicyProcessorPipeline,
    RenameObservationsProcessorStep,
)
from lerobot.processor.converters import policy_action_to_transition, transition_to_policy_action
from lerobot.utils.constants import POLICY_POSTPROCESSOR_DEFAULT_NAME, POLICY_PREPROCESSOR_DEFAULT_NAME

from lerobot_policy_gr00t_fast.configuration_gr00t_fast import Gr00tFastConfig


def make_gr00t_fast_pre_post_processors(
    config: Gr00tFastConfig, dataset_stats: dict[str, dict[str, torch.Tensor]] | None = None
) -> tuple[PolicyProcessorPipeline[dict[str, Any], dict[str, Any]], PolicyProcessorPipeline[PolicyAction, PolicyAction]]:
    """(preprocessor, postprocessor); `dataset_stats` are not used: the checkpoint carries its own."""
    pre = PolicyProcessorPipeline[dict[str, Any], dict[str, Any]](
        steps=[RenameObservationsProcessorStep(rename_map={}), AddBatchDimensionProcessorStep(),
               DeviceProcessorStep(device=config.device)],
        name=POLICY_PREPROCESSOR_DEFAULT_NAME,
    )
    post = PolicyProcessorPipeline[PolicyAction, PolicyAction](
        steps=[DeviceProcessorStep(device="cpu")],
        name=POLICY_POSTPROCESSOR_DEFAULT_NAME,
        to_transition=policy_action_to_transition,
        to_output=transition_to_policy_action,
    )
    return pre, post
