"""Whether bf16 matmuls pay on this CPU (`gr00t_fast.model.bf16_speed`): AMX without asking, AVX512-BF16 by a probe
measured once per machine and read from the cache after, an unreadable record measured again, an unwritable cache
costing only the probe."""

import json
import os
from pathlib import Path

import pytest
import torch

from gr00t_fast.model import bf16_speed
from gr00t_fast.model import quantize
from gr00t_fast.model.bf16_speed import MIN_SPEEDUP, Bf16Rates
from gr00t_fast.model.packed import PackedLinear
from gr00t_fast.runtime import cpuinfo

real_bf16_units = quantize.bf16_units  # read at import: the suite's autouse fixture stands it in for each test


@pytest.fixture
def probes(monkeypatch, tmp_path):
    """The probe counted and standing at 100 / 200 GFLOP/s, the cache in `tmp_path`, nothing remembered in-process."""
    calls = []
    monkeypatch.setenv("GR00T_FAST_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(bf16_speed, "probe_rates", lambda: calls.append(1) or Bf16Rates(100.0, 200.0))
    bf16_speed.bf16_rates.cache_clear()
    yield calls
    bf16_speed.bf16_rates.cache_clear()


def test_a_rate_is_a_finite_positive_number():
    for bad in (0, -1.0, float("nan"), float("inf"), 1e308, True, "300", None):
        with pytest.raises(ValueError, match="is not a measurement"):
            Bf16Rates(bad, 100.0)
        with pytest.raises(ValueError, match="is not a measurement"):
            Bf16Rates(100.0, bad)


def test_bf16_pays_from_the_speedup():
    assert not Bf16Rates(168.0, 287.0).pays  # the Intel Xeon without AMX
    assert Bf16Rates(440.0, 184.0).pays  # the AMD EPYC
    assert Bf16Rates(MIN_SPEEDUP * 100.0, 100.0).pays and not Bf16Rates(MIN_SPEEDUP * 100.0 - 1, 100.0).pays


def test_the_rates_are_measured_once_per_machine_then_read(probes, tmp_path):
    assert bf16_speed.bf16_rates() == Bf16Rates(100.0, 200.0) and len(probes) == 1
    records = list((tmp_path / "cache" / "cpu").glob("bf16_rates_*.json"))
    assert len(records) == 1 and json.loads(records[0].read_text()) == {"bf16_gflops": 100.0, "float32_gflops": 200.0}
    bf16_speed.bf16_rates.cache_clear()  # a later load, another process
    records[0].write_text(json.dumps({"bf16_gflops": 300.0, "float32_gflops": 200.0}))
    assert bf16_speed.bf16_rates() == Bf16Rates(300.0, 200.0) and len(probes) == 1
    broken = ["not json", json.dumps({"bf16": 1}), json.dumps([1, 2]), "[" * 100_000 + "]" * 100_000,
              *(json.dumps({"bf16_gflops": bad, "float32_gflops": 200.0}) for bad in (1e308, -5, 0, True, "300", None,
                                                                                       [300])),
              '{"bf16_gflops": Infinity, "float32_gflops": 200}', '{"bf16_gflops": 300, "float32_gflops": NaN}']
    for record in broken:  # none is a measurement: measured again, and rewritten
        bf16_speed.bf16_rates.cache_clear()
        records[0].write_text(record)
        assert bf16_speed.bf16_rates() == Bf16Rates(100.0, 200.0), record[:60]
        assert json.loads(records[0].read_text()) == {"bf16_gflops": 100.0, "float32_gflops": 200.0}
    assert len(probes) == 1 + len(broken)


def test_a_process_measuring_now_is_waited_for_and_its_record_read(probes, monkeypatch, tmp_path):
    """Two loads at once on one machine: the second waits on the first's file lock, then reads its record instead of
    measuring too (the first is a real process holding the lock until told to write)."""
    import subprocess
    import sys
    import threading

    from gr00t_fast.runtime import cache

    path = tmp_path / "cache" / "cpu" / "bf16_rates_this_machine.json"  # the key is not what is tested here
    monkeypatch.setattr(bf16_speed, "_record_path", lambda: path)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import json, sys; from pathlib import Path\n"
         "from gr00t_fast.runtime.atomic import write_atomic\nfrom gr00t_fast.runtime.cache import locked\n"
         "with locked(Path(sys.argv[1])):\n    print('held', flush=True)\n    sys.stdin.readline()\n"
         "    write_atomic(Path(sys.argv[1]), json.dumps({'bf16_gflops': 300.0, 'float32_gflops': 200.0}).encode())\n",
         str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=os.environ)
    try:
        assert holder.stdout.readline().strip() == "held"
        waiting, real_ticking = threading.Event(), cache.ticking
        monkeypatch.setattr(cache, "ticking", lambda *a, **k: waiting.set() or real_ticking(*a, **k))
        got = []
        reader = threading.Thread(target=lambda: got.append(bf16_speed.bf16_rates()), daemon=True)
        reader.start()
        assert waiting.wait(60)  # it found the lock held and waits
        holder.stdin.write("write\n")
        holder.stdin.flush()
        reader.join(60)
        assert got == [Bf16Rates(300.0, 200.0)] and probes == []  # read, not measured
    finally:
        holder.kill()
        holder.wait()


def test_a_record_is_kept_per_cpu_torch_and_instruction_set_cap(probes, monkeypatch, tmp_path):
    bf16_speed.bf16_rates()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # a capped oneDNN runs other kernels: its own record
    bf16_speed.bf16_rates.cache_clear()
    bf16_speed.bf16_rates()
    monkeypatch.setattr(bf16_speed.torch, "__version__", "0.0.0")
    bf16_speed.bf16_rates.cache_clear()
    bf16_speed.bf16_rates()
    other_cpu = tmp_path / "cpuinfo"
    for model, flags, mhz, measured in [("Another CPU", "avx2 avx512_bf16", "2000.0", 4),  # another model: its own
                                        ("Another CPU", "avx2 avx512_bf16", "3123.4", 4),  # its clock: the same CPU
                                        ("Another CPU", "avx2 avx512_bf16 amx_tile", "2000.0", 5)]:  # other flags
        other_cpu.write_text(f"processor\t: 0\nmodel name\t: {model}\ncpu MHz\t\t: {mhz}\nflags\t\t: {flags}\n")
        monkeypatch.setattr(cpuinfo, "CPUINFO", other_cpu)
        bf16_speed.bf16_rates.cache_clear()
        bf16_speed.bf16_rates()
        assert len(probes) == measured, (model, flags, mhz)
    assert len(list((tmp_path / "cache" / "cpu").glob("bf16_rates_*.json"))) == 5


def test_an_unwritable_cache_costs_only_the_probe(probes, monkeypatch, tmp_path):
    (tmp_path / "a_file").write_text("")
    monkeypatch.setenv("GR00T_FAST_CACHE", str(tmp_path / "a_file"))  # no folder can be made under a file
    assert bf16_speed.bf16_rates() == Bf16Rates(100.0, 200.0) and len(probes) == 1


def test_only_avx512_bf16_asks_the_measurement(monkeypatch):
    def measured(rates):
        monkeypatch.setattr(quantize, "bf16_rates", lambda: rates)

    monkeypatch.setattr(quantize, "bf16_flags", lambda: "AVX512-BF16")
    measured(Bf16Rates(168.0, 287.0))
    assert real_bf16_units() is None
    measured(Bf16Rates(440.0, 184.0))
    assert real_bf16_units() == "AVX512-BF16"
    measured(None)  # asked, it would fail: AMX and no units never ask
    for flags in ("AMX", None):
        monkeypatch.setattr(quantize, "bf16_flags", lambda flags=flags: flags)
        assert real_bf16_units() == flags


@pytest.mark.skipif(torch.backends.cpu.get_cpu_capability() in ("DEFAULT", "AVX2"),
                    reason="oneDNN's packed bf16 GEMM needs AVX512 (or AVX-NE-CONVERT); this CPU has AVX2 at most")
def test_the_probe_times_bf16_packed_and_float32_and_leaves_the_random_state(monkeypatch):
    ran, linear, forward = [], bf16_speed.F.linear, PackedLinear.forward
    monkeypatch.setattr(bf16_speed.F, "linear", lambda x, w: ran.append(("F.linear", x.dtype)) or linear(x, w))
    monkeypatch.setattr(PackedLinear, "forward", lambda self, x: ran.append(("packed", x.dtype)) or forward(self, x))
    state = torch.get_rng_state()
    rates = bf16_speed.probe_rates(reps=1)
    # a warm-up round and one timed round each; the packed layer tried once before (oneDNN may refuse it)
    assert sorted(ran) == [("F.linear", torch.float32)] * 2 + [("packed", torch.bfloat16)] * 3
    assert torch.equal(torch.get_rng_state(), state) and isinstance(rates, Bf16Rates)
    with pytest.raises(ValueError, match="reps must be >= 1"):
        bf16_speed.probe_rates(reps=0)


def test_a_packed_layer_oneDNN_refuses_is_timed_unpacked(monkeypatch):
    """oneDNN capped below AVX-512 may refuse packed bf16: the probe times bf16 as `F.linear` then, no load fails."""
    ran, linear = [], bf16_speed.F.linear

    def refused(self, x):
        raise RuntimeError("could not create a primitive descriptor")

    monkeypatch.setattr(bf16_speed.F, "linear", lambda x, w: ran.append(x.dtype) or linear(x, w))
    monkeypatch.setattr(PackedLinear, "forward", refused)
    bf16_speed.probe_rates(reps=1)
    assert sorted(ran, key=str) == [torch.bfloat16] * 2 + [torch.float32] * 2


def test_the_rule_reads_the_measurement_end_to_end(probes, monkeypatch, tiny_checkpoint):
    """dtype="auto" on a CPU whose flags say AVX512-BF16: float32 where the probe measured bf16 slower, bfloat16 where
    faster (the real `bf16_units` and precision rule; only the flags and the probe stood in)."""
    from gr00t_fast.model import load_model
    from gr00t_fast.model import precision

    monkeypatch.delenv(precision.AUTO_DTYPE_ENV, raising=False)
    for module in (quantize, precision):
        monkeypatch.setattr(module, "bf16_flags", lambda: "AVX512-BF16")
    small = load_model(tiny_checkpoint, device="cpu", dtype="auto")  # under 10M parameters: decided without a probe
    assert small.dtype == torch.float32 and "1.3M parameters" in small.precision.reason and not probes
    monkeypatch.setattr(precision, "BF16_MIN_PARAMETERS", 1_000_000)  # the tiny checkpoint counts as large
    model = load_model(tiny_checkpoint, device="cpu", dtype="auto")
    assert model.dtype == torch.float32 and len(probes) == 1
    assert model.precision.reason == ("AVX512-BF16, but its bf16 matmuls measured 100 GFLOP/s against float32's 200 "
                                      "on this CPU: bf16 does not pay")
    monkeypatch.setattr(bf16_speed, "probe_rates", lambda: Bf16Rates(300.0, 200.0))
    monkeypatch.setenv("GR00T_FAST_CACHE", str(Path(os.environ["GR00T_FAST_CACHE"]) / "another_machine"))
    bf16_speed.bf16_rates.cache_clear()
    assert load_model(tiny_checkpoint, device="cpu", dtype="auto").dtype == torch.bfloat16
