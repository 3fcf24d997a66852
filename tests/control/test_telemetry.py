"""`run --record_observations`'s recorder: which observations it keeps and how it writes them."""

import numpy as np

from gr00t_fast.control.telemetry import ObservationRecorder


def test_observation_recorder_keeps_a_uniform_sample_of_copies(tmp_path):
    """At most `capacity` observations, drawn over the whole run (not the first ones), each a copy, written stacked
    on a leading sample axis; nothing recorded writes no file."""
    recorder = ObservationRecorder(tmp_path / "obs.npz", capacity=3)
    for i in range(50):
        frame = np.full((1, 2, 2, 3), i, np.uint8)
        recorder.add({"video.front": frame, "state.arm": np.full((1, 5), float(i)), "task": ["pick"]})
        frame[:] = 255  # the robot reusing its buffer changes nothing kept
    assert recorder.close() == 3 and recorder.seen == 50
    with np.load(tmp_path / "obs.npz") as saved:
        kept = saved["video.front"][:, 0, 0, 0, 0].tolist()
        assert saved["video.front"].shape == (3, 1, 2, 2, 3) and saved["state.arm"].shape == (3, 1, 5)
        assert saved["task"].tolist() == [["pick"]] * 3
    assert len(set(kept)) == 3 and 255 not in kept and max(kept) >= 3  # later observations replaced early ones
    assert ObservationRecorder(tmp_path / "none.npz").close() == 0 and not (tmp_path / "none.npz").exists()
