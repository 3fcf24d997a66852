"""`gr00t-fast serve --protocol zmq|lerobot`: the one seam between the ZeroMQ server and LeRobot's async inference
(`tests/real_lerobot/test_async_inference.py` runs the LeRobot one against LeRobot's own client)."""

from __future__ import annotations

import sys

import pytest

from gr00t_fast.serve.cli import serve_main, serve_parser


def test_zmq_stays_the_default_and_needs_its_checkpoint(capsys):
    assert serve_parser().parse_args(["--model_path", "m"]).protocol == "zmq"
    with pytest.raises(SystemExit) as exited:
        serve_main([])
    assert exited.value.code == 2
    assert "the following arguments are required: --model_path" in capsys.readouterr().err


def test_lerobot_without_lerobots_transport_is_one_line_naming_install_lerobot(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "lerobot.transport", None)  # as where LeRobot (or grpcio) is not installed
    assert serve_main(["--protocol", "lerobot", "--port", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("gr00t-fast serve: error: --protocol lerobot needs LeRobot's gRPC transport "
                          "(lerobot.transport and grpcio), which does not import here (") and "Error: " in err \
        and "gr00t-fast install-lerobot" in err, err


def test_lerobot_flags_are_checked_on_the_flag_line(capsys):
    args = serve_parser().parse_args(["--protocol", "lerobot", "--camera_map", "{front: webcam}", "--fps", "15"])
    assert (args.port, args.camera_map, args.fps, args.model_path) == (None, {"front": "webcam"}, 15.0, "")
    with pytest.raises(SystemExit):
        serve_parser().parse_args(["--protocol", "lerobot", "--camera_map", "[front]"])
    assert "camera_map" in capsys.readouterr().err
