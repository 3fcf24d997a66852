"""Driving a robot with a policy: the control loop, its telemetry and the `run` command."""
