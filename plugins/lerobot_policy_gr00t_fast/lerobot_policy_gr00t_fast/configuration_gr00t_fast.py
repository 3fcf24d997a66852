"""`Gr00tFastConfig`: the LeRobot policy config of gr00t-fast (inference only)."""

from dataclasses import dataclass

from gr00t_fast.model.provenance import random_weights
from gr00t_fast.model.rtc import RTC_MODES
from lerobot.configs.policies import PreTrainedConfig
from lerobot.optim.optimizers import AdamWConfig


@PreTrainedConfig.register_subclass("gr00t_fast")
@dataclass
class Gr00tFastConfig(PreTrainedConfig):
    """A GR00T N1.5 checkpoint (Isaac-GR00T or LeRobot format) run by gr00t-fast."""

    model_path: str = ""  # the GR00T N1.5 checkpoint folder
    embodiment_tag: str = "new_embodiment"
    data_config: str = "auto"  # as gr00t-fast's --data_config
    denoising_steps: int | None = None
    backend: str = "torch"
    dtype: str = "auto"  # as gr00t-fast's --dtype: auto (bf16 where the CPU has AMX/AVX512-BF16 and it is faster), float32, ...
    n_action_steps: int = 8  # actions executed from each predicted chunk of 16
    # LeRobot camera name -> the checkpoint's video key, e.g. {front: video.webcam}; None: cameras in order
    camera_map: dict[str, str] | None = None
    use_degrees: bool = True  # the robot reports degrees (LeRobot's default): joint-limit clipping in degrees
    # lerobot-rollout --inference.type=rtc: gr00t-fast's real-time chunking mode (gr00t_fast.model.rtc);
    # guided-identity is the guidance LeRobot's own RTC computes
    rtc_mode: str = "guided-identity"
    # a checkpoint `gr00t-fast make-checkpoint` generated (random weights) is refused: LeRobot's scripts drive a
    # robot with the policy. True only for a benchmark or a simulation
    allow_random_weights: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.n_action_steps <= 16:
            raise ValueError(f"n_action_steps must be in 1..16 (one GR00T chunk), got {self.n_action_steps}")
        if self.rtc_mode not in RTC_MODES:
            raise ValueError(f"rtc_mode must be one of {RTC_MODES}, got {self.rtc_mode!r}")

    @property
    def observation_delta_indices(self) -> None:
        return None

    @property
    def action_delta_indices(self) -> list[int]:
        return list(range(self.n_action_steps))

    @property
    def reward_delta_indices(self) -> None:
        return None

    def get_optimizer_preset(self) -> AdamWConfig:  # inference only: training is Isaac-GR00T's or LeRobot's groot
        return AdamWConfig(lr=0.0)

    def get_scheduler_preset(self) -> None:
        return None

    def validate_features(self) -> None:
        if not self.model_path:
            raise ValueError("gr00t_fast needs --policy.model_path: the GR00T N1.5 checkpoint to run")
        made = None if self.allow_random_weights else random_weights(self.model_path)
        if made:
            raise ValueError(f"--policy.model_path={self.model_path} holds weights gr00t-fast make-checkpoint "
                             f"generated ({made}), not trained ones: gr00t_fast does not drive a robot with them "
                             "(--policy.allow_random_weights=true only for a benchmark or a simulation)")


__all__ = ["Gr00tFastConfig"]
