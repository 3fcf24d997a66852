"""Driving a robot with a policy: the robot <-> policy adapter, the control loop, its telemetry and `gr00t-fast run`.

Names resolve on first use (`runtime.lazy`), so that `gr00t-fast run --help` and the torch-free modules here
(`control.outputs`, `control.signals`) import no torch."""

from gr00t_fast.runtime.lazy import lazy_names

_HOMES = {
    "ActionQueue": "loop", "ControlConfig": "config", "ControlLoop": "loop", "RobotAdapter": "loop",
    "stop_on_signals": "loop",
    "LiveTelemetry": "telemetry", "ObservationRecorder": "telemetry", "StepRecord": "telemetry",
    "StepRecorder": "telemetry", "format_summary": "telemetry", "load_records": "telemetry", "summarize": "telemetry",
}
__all__ = sorted(_HOMES)

__getattr__ = lazy_names(__name__, _HOMES)
