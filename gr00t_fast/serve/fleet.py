"""Moved: the fleet server is split by concern into `fleet_model` (the Triton model), `triton` (launching Triton),
`fleet_front` (the ZeroMQ front) and `cli` (`fleet_main`, `fleet_parser`). This module keeps the old names
importable for one release, with a DeprecationWarning."""

import warnings

from gr00t_fast.serve.cli import fleet_main as main
from gr00t_fast.serve.cli import fleet_parser as build_parser
from gr00t_fast.serve.fleet_front import FleetFront, triton_inputs
from gr00t_fast.serve.fleet_model import (
    ERROR, GRAPH_BUCKETS, GRAPH_PROMPT_STEP, MAX_ROBOTS, MODEL_NAME, NOISE, ROBOT_ID, RTC, FleetModel, infer_function,
    request_observation, request_rtc, triton_tensors,
)
from gr00t_fast.serve.triton import check_ports_free, free_port, start_triton, token_headers, triton_environment

__all__ = ["ERROR", "GRAPH_BUCKETS", "GRAPH_PROMPT_STEP", "MAX_ROBOTS", "MODEL_NAME", "NOISE", "ROBOT_ID", "RTC",
           "FleetFront", "FleetModel", "build_parser", "check_ports_free", "free_port", "infer_function", "main",
           "request_observation", "request_rtc", "start_triton", "token_headers", "triton_environment",
           "triton_inputs", "triton_tensors"]

warnings.warn("gr00t_fast.serve.fleet is split into gr00t_fast.serve.fleet_model, .triton, .fleet_front and .cli; "
              "the old path goes away in the next release", DeprecationWarning, stacklevel=2)
