"""The policy layer: the `Policy` contract, data configs, checkpoint metadata, the processor and `Gr00tPolicy`.

A policy is processor -> backend -> decode; `gr00t_fast.loading` assembles one (it imports this package, never the
other way round). Its names load on first use (`runtime.lazy`): `gr00t_fast.policy.data_config` (read by the torch-free data layer)
imports no torch and no model code.
"""

from gr00t_fast.runtime.lazy import lazy_names

_WHERE = {
    "Policy": "base", "PolicyConfig": "config", "add_policy_arguments": "config", "policy_config_from_args": "config",
    "DATA_CONFIGS": "data_config", "DataConfig": "data_config", "get_data_config": "data_config",
    "EmbodimentMetadata": "metadata", "load_metadata": "metadata", "check_data_config": "preflight",
    "check_policy_inputs": "preflight",
    "Gr00tPolicy": "policy",
    "NonFiniteActionError": "policy", "Processor": "processor", "processor_for_model": "processor",
    "read_observations": "observations", "batch_observations": "base",
}

__all__ = sorted(_WHERE)

__getattr__ = lazy_names(__name__, _WHERE)
