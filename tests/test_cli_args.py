"""The command-line surface of every command: values parsed as typed (YAML 1.1's special words), one flag dialect,
help for every flag, one line and exit code 2 for every bad input. Parse-only failures: no model is ever loaded."""

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gr00t_fast.cli_args import ArgumentParser, missing_extra, normalize_flag
from gr00t_fast.configs import CONFIG_DIR
from gr00t_fast.control import run
from gr00t_fast.robot.follower import port_problem
from gr00t_fast.typed_config import flag_fields

REPO = Path(__file__).resolve().parents[1]
# every word YAML 1.1 reads as a boolean or null (PyYAML's resolver), and case variants
YAML_WORDS = ["y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "true", "True", "TRUE", "false", "False",
              "FALSE", "on", "On", "ON", "off", "Off", "OFF", "null", "Null", "NULL", "~", "none", "None", "0o7", "007",
              "1e3", ".inf", "0x1F", "1_000", "12:30"]
NULLS = ["null", "Null", "NULL", "~"]
FOLLOWER = ["--robot.type=so100_follower", "--robot.port=COM3"]


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def cli(*args: str, script: str | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, script] if script else [sys.executable, "-m", "gr00t_fast.cli"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(command + list(args), capture_output=True, text=True, timeout=120, cwd=REPO, env=env)


# --- values as typed --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("word", YAML_WORDS)
def test_text_flags_keep_every_yaml_word_as_typed(word):
    cfg = run.parse([f"--lang_instruction={word}", f"--data_config={word}", f"--robot_id={word}", "--device=cpu",
                     f"--embodiment_tag={word}", *FOLLOWER, f"--robot.id={word}", "--model_path=m"])
    assert (cfg.lang_instruction, cfg.data_config, cfg.embodiment_tag) == (word, word, word)
    expected = None if word in NULLS else word  # an optional text setting is unset by YAML's null spellings only
    assert cfg.robot_id == expected and cfg.robot.id == expected


@pytest.mark.parametrize("word", YAML_WORDS)
def test_yaml_config_files_keep_every_word_as_typed(word, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(f"lang_instruction: {word}\ndata_config: {word}\nrobot_id: {word}\nrtc: off\n"
                    f"robot: {{type: so100_follower, port: {word if word not in NULLS else 'x'}, id: '{word}'}}\n")
    cfg = run.parse([f"--config_path={path}"])
    assert (cfg.lang_instruction, cfg.data_config, cfg.rtc, cfg.robot.id) == (word, word, "off", word)
    assert cfg.robot_id == (None if word in NULLS else word)  # a quoted 'null' stays text (cfg.robot.id)


def test_choice_flags_take_their_words_and_name_a_wrong_one_as_typed(capsys):
    assert run.parse(["--rtc=off", "--mode=async"]).rtc == "off"
    assert run.parse(["--rtc", "guided-identity"]).rtc == "guided-identity"
    assert run.parse(["--quantize=int8", "--dtype=null"]).quantize == "int8"
    for flag, words in [("--mode=yes", "--mode: expected one of sync, async, got 'yes'"),
                        ("--rtc=Off", "--rtc: expected one of off, freeze, guided, guided-identity, got 'Off'"),
                        ("--quantize=none", "expected one of int8, fp8 or null, got 'none'")]:
        assert run.main([flag]) == 2
        assert words in one_error_line(capsys)


@pytest.mark.parametrize("word, value", [(w, True) for w in ("true", "True", "yes", "on", "y", "ON")]
                         + [(w, False) for w in ("false", "no", "off", "n", "Off")])
def test_boolean_flags_read_yaml_booleans(word, value):
    cfg = run.parse([*FOLLOWER, f"--robot.use_degrees={word}", f"--policy_legacy_format={word}"])
    assert cfg.robot.use_degrees is value and cfg.policy_legacy_format is value


def test_optional_numbers_unset_by_null_and_numbers_as_typed(capsys):
    for word in NULLS:
        cfg = run.parse([f"--duration={word}", f"--max_steps={word}", f"--denoising_steps={word}"])
        assert (cfg.duration, cfg.max_steps, cfg.denoising_steps) == (None, None, None)
    cfg = run.parse(["--duration=1e3", "--max_steps=12", "--fps=15", "--robot.max_relative_target={gripper: 10}"])
    assert (cfg.duration, cfg.max_steps, cfg.fps) == (1000.0, 12, 15.0)
    assert cfg.robot.max_relative_target == {"gripper": 10.0}
    for flag, words in [("--max_steps=1.5", "--max_steps: expected an integer or null, got '1.5'"),
                        ("--duration=inf", "--duration: expected a number or null, got 'inf'"),
                        ("--fps=on", "--fps: expected a number, got 'on'")]:
        assert run.main([flag]) == 2
        assert words in one_error_line(capsys)


# --- one line for bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize("flags, words", [
    (["--robot.cameras={front: {type: opencv, index_or_path: 0"], "--robot.cameras: malformed YAML: expected ','"),
    (["--camera_map=[front"], "--camera_map: malformed YAML"),
    (["--camera_map=front"], "--camera_map: expected a mapping"),
    (["--robot.cameras={front: {type: sim, widht: 3}}"], "--robot.cameras (front.widht): not a setting of type sim "
                                                         "(did you mean width?)"),
    (["--robot.type=so100_follower"], "--robot.port: required for type so100_follower"),
    (["--robot.type=so101_follower", "--model_path=m"], "--robot.port: required for type so101_follower"),
    (["--robot.port=/dev/ttyACM0"], "--robot.port: not a setting of type so100_sim"),
    (["--lang_instruction="], "lang_instruction is empty"),
    (["--lang_instruction=   "], "lang_instruction is empty"),
    (["--robot.type=ur5"], "--robot.type: expected one of so100_follower, so101_follower, so100_sim, got 'ur5'"),
])
def test_bad_flags_name_the_flag_in_one_line(flags, words, capsys):
    assert run.main(flags) == 2
    assert words in one_error_line(capsys)


@pytest.mark.parametrize("text, words", [
    ("fsp: 15\n", "c.yaml: fsp: not a setting (did you mean fps?)"),
    ("robot:\n  type: so100_follower\n  prot: /dev/ttyACM0\n", "c.yaml: robot.prot: not a setting of type "
                                                                 "so100_follower (did you mean port?)"),
    ("robot: {type: so100_sim\n", "c.yaml: malformed YAML"),
    ("- fps\n", "c.yaml: expected a mapping of settings"),
    ("fps: fast\n", "c.yaml: fps: expected a number, got 'fast'"),
])
def test_a_bad_config_file_is_named_with_its_key(text, words, tmp_path, capsys):
    (tmp_path / "c.yaml").write_text(text)
    assert run.main([f"--config_path={tmp_path / 'c.yaml'}"]) == 2
    assert words in one_error_line(capsys)


def test_flags_override_a_config_file_and_another_robot_type_drops_its_settings():
    cfg = run.parse([f"--config_path={CONFIG_DIR / 'so100_follower.yaml'}", "--rtc=off", "--fps=15"])
    assert (cfg.robot.port, cfg.fps, cfg.camera_map) == ("/dev/ttyACM0", 15, {"front": "video.webcam"})
    sim = run.parse([f"--config_path={CONFIG_DIR / 'so100_follower.yaml'}", "--robot.type=so100_sim"])
    assert sim.robot.type == "so100_sim" and sim.data_config == "so100"


# --- one dialect ------------------------------------------------------------------------------------------------


def all_parsers() -> dict[str, argparse.ArgumentParser]:
    from gr00t_fast.dev.bench.cli import build_parser as bench
    from gr00t_fast.dev.make_checkpoint import build_parser as make_checkpoint
    from gr00t_fast.export.cli import build_parser as export
    from gr00t_fast.serve.cli import fleet_parser as fleet
    from gr00t_fast.serve.cli import serve_parser as serve
    from gr00t_fast.typed_config import config_parser

    parsers = {"run": config_parser(run.RunConfig, "gr00t-fast run", ""), "serve": serve(), "fleet serve": fleet(),
               "make-checkpoint": make_checkpoint(), "export": export()}
    benches = next(a for a in bench()._actions if isinstance(a, argparse._SubParsersAction))
    parsers.update({f"bench {name}": p for name, p in benches.choices.items()})
    return parsers


def test_every_flag_of_every_command_has_help_one_spelling_and_no_drifting_names():
    flags = {}
    for command, parser in all_parsers().items():
        assert isinstance(parser, ArgumentParser), command
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help and action.help.strip(), (command, action.option_strings or action.dest)
            for flag in action.option_strings:
                assert flag == normalize_flag(flag), (command, flag)  # declared once, underscores
                flags.setdefault(flag, []).append(command)
    assert not {"--duration_s", "--api-token", "--model-path", "--demo-task"} & set(flags)
    assert set(flags["--steps"]) == {"bench inference", "bench scaling", "bench ab"}  # sweeps; one count elsewhere
    assert {"run", "serve", "fleet serve", "export"} <= set(flags["--denoising_steps"])
    assert {"run", "serve", "fleet serve", "bench inference", "bench server"} <= set(flags["--api_token"])
    assert {"run", "bench loop", "bench fleet"} <= set(flags["--duration"])


def test_run_help_text_comes_from_every_fields_metadata_or_comment():
    flags = flag_fields(run.RunConfig)
    assert len(flags) > 40 and [f.name for f in flags if not f.help] == []
    text = all_parsers()["run"].format_help()
    for words in ["--rtc {off,freeze,guided,guided-identity}", "(default: off)", "--fps FLOAT", "(default: 30)",
                  "--robot.type {so100_follower,so101_follower,so100_sim}", "the arm's serial port", "(required)",
                  "--lang_instruction TEXT", "the task", "--robot.use_degrees {true,false}", "--duration FLOAT"]:
        assert words in " ".join(text.split()), words


def test_kebab_and_snake_spellings_parse_alike(tmp_path):
    snake = run.parse(["--model_path=m", "--lang_instruction=go", "--robot.max_relative_target=5", "--rtc_beta=2"])
    kebab = run.parse(["--model-path=m", "--lang-instruction=go", "--robot.max-relative-target=5", "--rtc-beta", "2"])
    assert snake == kebab
    serve = all_parsers()["serve"]
    assert vars(serve.parse_args(["--model-path", "m", "--api-token", "s", "--max-message-mb", "3"])) == vars(
        serve.parse_args(["--model_path", "m", "--api_token", "s", "--max_message_mb", "3"]))
    made = all_parsers()["make-checkpoint"]
    assert made.parse_args(["--out", "o", "--demo-task", "reach"]).demo_task == "reach"
    assert made.parse_args(["--out", "o", "--demo_task", "reach", "--demo-steps", "5"]).demo_steps == 5


def test_old_spellings_still_work_and_warn(capsys):
    from gr00t_fast.dev.bench.cli import build_parser as bench
    from gr00t_fast.export.cli import build_parser as export

    assert export().parse_args(["onnx", "--model_path", "m", "--out", "o", "--steps", "2"]).denoising_steps == 2
    assert bench().parse_args(["fleet", "--duration_s", "3"]).duration == 3
    err = capsys.readouterr().err
    assert "--steps is deprecated, use --denoising_steps" in err and "--duration_s is deprecated, use --duration" in err


# --- missing extras, ports --------------------------------------------------------------------------------------


def test_export_without_onnx_names_the_extra_and_writes_nothing(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    from gr00t_fast.export.cli import main

    monkeypatch.setitem(sys.modules, "onnx", None)  # as if the onnx extra were not installed
    out = tmp_path / "out"
    assert main(["onnx", "--model_path", str(tiny_checkpoint), "--out", str(out)]) == 2
    assert 'export onnx needs onnx, not installed: pip install "gr00t-fast[onnx]"' in one_error_line(capsys)
    assert not out.exists()


def test_export_of_a_bad_checkpoint_is_one_line_and_leaves_nothing(tmp_path, capsys):
    from gr00t_fast.export.cli import main

    out = tmp_path / "out"
    assert main(["int8", "--model-path", str(tmp_path / "absent"), "--out", str(out)]) == 2
    assert "does not exist" in one_error_line(capsys) and not out.exists()


def test_bench_without_matplotlib_names_the_extra(monkeypatch, capsys):
    from gr00t_fast.dev.bench.cli import main

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["fleet", "--servers", "serial"]) == 2
    assert 'bench fleet needs matplotlib, not installed: pip install "gr00t-fast[bench]"' in one_error_line(capsys)


def test_a_missing_extra_module_is_named_by_its_extra():
    assert missing_extra(ModuleNotFoundError("No module named 'pytriton'", name="pytriton")) == \
        'this command needs pytriton, not installed: pip install "gr00t-fast[fleet]"'
    assert missing_extra(ModuleNotFoundError("No module named 'numpyy'", name="numpyy")) is None


def test_port_check_refuses_only_a_missing_device_path():
    assert "serial port /dev/ttyACM_nothing does not exist" in port_problem("/dev/ttyACM_nothing")
    assert "lerobot-find-port" in port_problem("/dev/tty.usbmodem58FA0921581")
    for port in ("COM3", "/dev/null", "\\\\.\\COM12", "tty.usbmodem1"):  # Windows ports and others: LeRobot's to judge
        assert port_problem(port) is None


# --- the real entry points (subprocesses; each fails or stops before a model loads) -----------------------------


@pytest.mark.slow
def test_entry_points_answer_in_one_line():
    typo = cli("run", "--denoising_step=2")
    assert typo.returncode == 2 and typo.stderr.strip() == (
        "gr00t-fast run: error: unknown flag --denoising_step (did you mean --denoising_steps?)")
    refused = cli("--rtc=off", "--mode=async", "--lang-instruction=yes", "--robot.type=so100_follower",
                  "--robot.port=COM3", "--robot.cameras={front: {type: opencv, index_or_path: 0}}",
                  script="so100_inference_optimized.py")  # parses; refused for want of --model_path, untouched
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "--model_path" in refused.stderr
    bad_yaml = cli("--robot.cameras={front: {type: opencv", script="so100_inference_optimized.py")
    assert bad_yaml.returncode == 2 and bad_yaml.stderr.startswith("gr00t-fast run: error: --robot.cameras: malformed")
    serve = cli("serve", "--model-path", "m", "--denoising-step", "2")
    assert serve.returncode == 2 and serve.stderr.strip() == (
        "gr00t-fast serve: error: unknown flag --denoising_step (did you mean --denoising_steps?)")
    version = cli("--version")
    assert version.returncode == 0 and version.stdout.startswith("gr00t-fast 0.")


def test_help_of_run_and_bench_explains():
    helped = cli("--help", script="so100_inference_optimized.py")
    assert helped.returncode == 0 and "the task, as the policy was trained to read it" in helped.stdout
    bench = cli("bench", "--help")
    assert bench.returncode == 0 and "Every flag also takes dashes." in bench.stdout


def test_run_help_shows_the_values_that_would_run(capsys):
    """`run --help` alone shows the sim_demo config's values (the no-flag run: 10 Hz, horizon 16) and `--config
    NAME` in its usage; with a config named, that config's."""
    from gr00t_fast.control.run import parse

    def help_of(*argv: str) -> str:
        with pytest.raises(SystemExit) as e:
            parse([*argv, "--help"])
        assert e.value.code == 0
        return " ".join(capsys.readouterr().out.split())

    demo = help_of()
    assert "[--config NAME]" in demo and "The defaults shown are sim_demo.yaml's" in demo
    assert "one action per period (default: 10)" in demo and "may be executed (default: 16)" in demo
    follower = help_of("--config", "so100_follower")
    assert "one action per period (default: 30)" in follower and "may be executed (default: 8)" in follower
    from gr00t_fast.serve.cli import serve_parser

    serve = " ".join(serve_parser().format_help().split())  # the flags it shares with run say nothing of run's
    assert "run:" not in serve and "simulation" not in serve and "timed at load" not in serve
