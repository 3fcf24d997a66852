"""The policy layer: the `Policy` contract, data configs, checkpoint metadata, the processor and `Gr00tPolicy`.

A policy is processor -> backend -> decode; `gr00t_fast.loading` assembles one (it imports this package, never the
other way round). Its names load on first use: `gr00t_fast.policy.data_config` (read by the torch-free data layer)
imports no torch and no model code.
"""

import importlib

_WHERE = {
    "Policy": "base", "PolicyConfig": "config", "add_policy_arguments": "config", "policy_config_from_args": "config",
    "DATA_CONFIGS": "data_config", "DataConfig": "data_config", "get_data_config": "data_config",
    "EmbodimentMetadata": "metadata", "load_metadata": "metadata", "Gr00tPolicy": "policy",
    "NonFiniteActionError": "policy", "Processor": "processor", "processor_for_model": "processor",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
