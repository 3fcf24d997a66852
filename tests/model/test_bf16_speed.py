"""Whether bf16 matmuls pay on this CPU (`gr00t_fast.model.bf16_speed`): AMX without asking, AVX512-BF16 by a probe
measured once per machine and read from the cache after, an unreadable record measured again, an unwritable cache
costing only the probe."""

import json

import pytest

from gr00t_fast.model import bf16_speed
from gr00t_fast.model import quantize
from gr00t_fast.model.bf16_speed import MIN_SPEEDUP, Bf16Rates

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
    for broken in ("not json", json.dumps({"bf16": 1}), json.dumps([1, 2])):  # measured again, and rewritten
        bf16_speed.bf16_rates.cache_clear()
        records[0].write_text(broken)
        assert bf16_speed.bf16_rates() == Bf16Rates(100.0, 200.0)
        assert json.loads(records[0].read_text()) == {"bf16_gflops": 100.0, "float32_gflops": 200.0}
    assert len(probes) == 4


def test_an_unwritable_cache_costs_only_the_probe(probes, monkeypatch, tmp_path):
    (tmp_path / "a_file").write_text("")
    monkeypatch.setenv("GR00T_FAST_CACHE", str(tmp_path / "a_file"))  # no folder can be made under a file
    assert bf16_speed.bf16_rates() == Bf16Rates(100.0, 200.0) and len(probes) == 1


def test_only_avx512_bf16_asks_the_measurement(monkeypatch):
    def measured(rates):
        monkeypatch.setattr(bf16_speed, "bf16_rates", lambda: rates)

    monkeypatch.setattr(quantize, "bf16_flags", lambda: "AVX512-BF16")
    measured(Bf16Rates(168.0, 287.0))
    assert real_bf16_units() is None
    measured(Bf16Rates(440.0, 184.0))
    assert real_bf16_units() == "AVX512-BF16"
    measured(None)  # asked, it would fail: AMX and no units never ask
    for flags in ("AMX", None):
        monkeypatch.setattr(quantize, "bf16_flags", lambda flags=flags: flags)
        assert real_bf16_units() == flags


def test_the_probe_times_both_dtypes():
    rates = bf16_speed.probe_rates(reps=1)
    assert 0 < rates.bf16_gflops < float("inf") and 0 < rates.float32_gflops < float("inf")
