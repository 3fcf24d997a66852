"""The memory plan (`gr00t-fast bench gpu --plan`) from the trace: weights of the full size, activations growing with
the fleet's rows, fits and headroom per GPU."""

import pytest

from conftest import CPU_BUILD, WHY_SKIPPED, on_torch_thread
from gr00t_fast.dev.memory_plan import DEVICES, RUNTIME_GIB, measure, table, usable_gib

if CPU_BUILD:
    pytest.skip(WHY_SKIPPED, allow_module_level=True)


def test_plan_of_bf16_weights_for_one_and_four_rows(cuda, folder):
    plan = on_torch_thread(measure, cuda, folder, (1, 4), ("bf16",))
    one, four = plan
    assert 4.4 < one["weights_gib"] < 4.6  # 2.40B parameters in bfloat16
    assert 0 < one["activations_gib"] < four["activations_gib"] < 1
    text = table(plan)
    assert text.count("\n") == 3 and all(name in text.splitlines()[0] for name in DEVICES)
    total = one["weights_gib"] + one["activations_gib"] + RUNTIME_GIB
    assert f"fits, {usable_gib('H100 80 GB') - total:+.1f}" in text.splitlines()[2]
