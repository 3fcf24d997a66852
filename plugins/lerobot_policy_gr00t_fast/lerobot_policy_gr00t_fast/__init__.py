"""gr00t-fast as a LeRobot policy plugin. LeRobot imports every installed `lerobot_policy_*` distribution at start-up
(`register_third_party_plugins`); importing this one registers the policy type `gr00t_fast`:

    lerobot-record --policy.type=gr00t_fast --policy.model_path=<GR00T N1.5 checkpoint> ...      (LeRobot 0.4)
    lerobot-record --policy.path=<a folder saved by Gr00tFastConfig.save_pretrained> ...         (LeRobot 0.4)
    lerobot-rollout --policy.path=<that folder> [--inference.type=rtc] ...                        (LeRobot 0.6)
"""

from lerobot_policy_gr00t_fast.configuration_gr00t_fast import Gr00tFastConfig

__all__ = ["Gr00tFastConfig"]
