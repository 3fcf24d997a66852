"""/proc/cpuinfo's fields (`gr00t_fast.runtime.cpuinfo`): the first of each name, None where there is none."""

from gr00t_fast.runtime import cpuinfo
from gr00t_fast.runtime.cpuinfo import cpuinfo_field, cpuinfo_fields


def test_the_first_value_of_a_field(monkeypatch, tmp_path):
    text = tmp_path / "cpuinfo"
    text.write_text("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t\t: fpu avx2 avx512_vnni\n\n"
                    "processor\t: 1\nmodel name\t: Second socket\nmodel name extra\t: no\n")
    monkeypatch.setattr(cpuinfo, "CPUINFO", text)
    assert cpuinfo_field("model name") == "Intel(R) Xeon(R) Processor"
    assert cpuinfo_field("flags") == "fpu avx2 avx512_vnni"
    assert cpuinfo_field("model") is None  # a name is matched whole, not as a prefix
    assert cpuinfo_field("cpu MHz") is None
    assert cpuinfo_fields("flags", "model name", "cpu MHz") == ["fpu avx2 avx512_vnni", "Intel(R) Xeon(R) Processor",
                                                                 None]


def test_the_benchmarks_read_the_same_reader():
    from gr00t_fast.dev.bench import common  # its old home, kept importable

    assert common.cpuinfo_field is cpuinfo_field and common.CPU_FLAGS is cpuinfo.CPU_FLAGS


def test_a_result_file_records_the_cpu_and_its_units(monkeypatch, tmp_path):
    text = tmp_path / "cpuinfo"
    text.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 fma avx512_vnnix\n")
    monkeypatch.setattr(cpuinfo, "CPUINFO", text)
    record = cpuinfo.cpu_record()
    assert record["cpu"] == "AMD EPYC"
    assert record["cpu_flags"] == {flag: flag == "avx2" for flag in cpuinfo.CPU_FLAGS}  # whole names: no vnni here
    monkeypatch.setattr(cpuinfo, "CPUINFO", tmp_path / "absent")  # not Linux: the platform's name, no unit claimed
    assert cpuinfo.cpu_record()["cpu_flags"] == dict.fromkeys(cpuinfo.CPU_FLAGS, False)


def test_no_file_is_no_field(monkeypatch, tmp_path):
    monkeypatch.setattr(cpuinfo, "CPUINFO", tmp_path / "absent")
    assert cpuinfo_field("flags") is None and cpuinfo_fields("flags", "model name") == [None, None]
    monkeypatch.setattr(cpuinfo, "CPUINFO", tmp_path)  # a folder: unreadable as text
    assert cpuinfo_field("flags") is None
