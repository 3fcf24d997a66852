#!/usr/bin/env python
"""Drive a real or simulated SO-100 with GR00T N1.5 from one terminal (same as `gr00t-fast run`).

    python so100_inference_optimized.py --robot.type=so100_follower --robot.port=/dev/tty.usbmodem58FA0921581 \
        --robot.id=black --robot.cameras="{ front: {type: opencv, index_or_path: 1, width: 1280, height: 720, fps: 30}}" \
        --model_path=<checkpoint> --embodiment_tag=new_embodiment --data_config=so100 --denoising_steps=2 \
        --lang_instruction="Place the block in the bowl" --action_horizon=8
"""

import sys

from gr00t_fast.cli import console

if __name__ == "__main__":
    console(["run", *sys.argv[1:]])
