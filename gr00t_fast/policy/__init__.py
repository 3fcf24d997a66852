"""The policy layer: the `Policy` contract, data configs, checkpoint metadata, the processor and `Gr00tPolicy`.

A policy is processor -> backend -> decode; `gr00t_fast.loading` assembles one (it imports this package, never the
other way round)."""

from gr00t_fast.policy.base import Policy
from gr00t_fast.policy.config import PolicyConfig, add_policy_arguments, policy_config_from_args
from gr00t_fast.policy.data_config import DATA_CONFIGS, DataConfig, get_data_config
from gr00t_fast.policy.metadata import EmbodimentMetadata, load_metadata
from gr00t_fast.policy.policy import Gr00tPolicy, NonFiniteActionError
from gr00t_fast.policy.processor import Processor, processor_for_model

__all__ = ["DATA_CONFIGS", "DataConfig", "EmbodimentMetadata", "Gr00tPolicy", "NonFiniteActionError", "Policy",
           "PolicyConfig", "Processor", "add_policy_arguments", "get_data_config", "load_metadata",
           "policy_config_from_args", "processor_for_model"]
