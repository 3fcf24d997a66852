"""Driving a robot with a policy: the robot <-> policy adapter, the control loop, its telemetry and `gr00t-fast run`."""

from gr00t_fast.policy.adapter import RobotAdapter
from gr00t_fast.control.loop import ActionQueue, ControlConfig, ControlLoop, stop_on_signals
from gr00t_fast.control.telemetry import (
    LiveTelemetry, ObservationRecorder, StepRecord, StepRecorder, format_summary, load_records, summarize,
)

__all__ = ["ActionQueue", "ControlConfig", "ControlLoop", "LiveTelemetry", "ObservationRecorder", "RobotAdapter",
           "StepRecord", "StepRecorder", "format_summary", "load_records", "stop_on_signals", "summarize"]
