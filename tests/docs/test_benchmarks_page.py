"""The benchmarks page (`benchmarks/README.md`) is what `benchmarks/page.py` makes of the result files it cites: the
committed page is regenerated and compared, every file it cites exists, and a number changed in a result file
changes the page."""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "benchmarks" / "README.md"


@pytest.fixture(scope="module")
def page():
    spec = importlib.util.spec_from_file_location("benchmarks_page", REPO / "benchmarks" / "page.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_the_page_is_what_its_result_files_say(page):
    assert page.render() == PAGE.read_text(), "benchmarks/README.md differs: run `python benchmarks/page.py`"


def test_every_file_the_page_cites_exists(page):
    named = set(re.findall(r"\bresults/([\w./-]+\.(?:json|png|md|txt))", PAGE.read_text()))
    assert set(page.sources()) <= named
    assert [f for f in sorted(named) if not (page.RESULTS / f).is_file()] == []


def test_a_number_changed_in_a_result_file_changes_the_page(page, tmp_path):
    file = "cpu/ab_full_openvino_avx512bf16_2026-11-25.json"
    for name in page.sources():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(page.RESULTS / name, tmp_path / name)
    data = json.loads((tmp_path / file).read_text())
    nvidia = next(c for c in data["configurations"] if c["name"] == "NVIDIA in-process fp32")
    assert nvidia["median"] < 9000
    nvidia["median"] = 9876.0
    (tmp_path / file).write_text(json.dumps(data))
    changed = page.render(tmp_path)
    assert changed != PAGE.read_text()
    assert "| NVIDIA fp32, a call | 22.2 ms | 137.6 ms | 9.88 s |" in changed


def test_a_row_that_finds_no_record_is_refused(page):
    table = page.Table(rows=[page.Row("a typo", "gr00t-fast torch 4-step fp23")],
                       columns=page.per_size(page.EPYC, page.speedup))
    with pytest.raises(ValueError, match="'a typo' finds no record"):
        table.render(lambda file: json.loads((page.RESULTS / file).read_text()))


def test_a_row_naming_a_file_per_column_must_name_one_for_each(page):
    columns = page.WITHIN_COLUMNS
    files = {col.label: "cpu/int8_error_sources_small_avx512bf16_2026-11-26.json" for col in columns}
    assert page.Table(rows=[page.Row("48M", file=files)], columns=columns).files() == [files[columns[0].label]]
    for wrong in ({**files, "a typo": files[columns[0].label]}, dict(list(files.items())[1:])):
        with pytest.raises(ValueError, match="row '48M' names files for the columns"):
            page.Table(rows=[page.Row("48M", file=wrong)], columns=columns)


def test_the_cpu_flags_are_the_ones_the_result_files_record(page):
    source = (REPO / "gr00t_fast" / "runtime" / "cpuinfo.py").read_text()
    recorded = next(ast.literal_eval(node.value) for node in ast.parse(source).body
                    if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "CPU_FLAGS")
    assert page.CPU_FLAGS == recorded


def test_a_cpu_class_heading_refuses_a_file_of_another_class(page, tmp_path):
    """A class's section (`Section.cpu`) reads only files that record that class's flags: a file of a CPU without
    bf16 units under the AVX512-BF16 heading is an error, not a mislabelled column."""
    for name in page.sources():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(page.RESULTS / name, tmp_path / name)
    file = tmp_path / page.EPYC[1]
    data = json.loads(file.read_text())
    data["environment"]["cpu_flags"]["avx512_bf16"] = False
    file.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="'AVX512-BF16' reads .*ab_small_openvino_avx512bf16.*, which records "
                                         "\\{'avx512_bf16': False\\}"):
        page.render(tmp_path)


def test_an_error_cell_over_calls_needs_a_file_that_recorded_them(page):
    row = {"max": 3.0, "mean": 0.5, "calls_median": 1.25}
    assert page.row_error("int8", spread=True)({"command": "x", "rows": {"int8": row}}) == "3.00 / 1.25 (0.50)"
    assert page.row_error("int8")({"command": "x", "rows": {"int8": row}}) == "3.00 (0.50)"
    older = {"command": "int8_error_sources.py --out old.json", "rows": {"int8": {"max": 3.0, "mean": 0.5}}}
    with pytest.raises(ValueError, match="wrote no row 'int8' with its calls"):
        page.row_error("int8", spread=True)(older)
    with pytest.raises(ValueError, match="wrote no row 'bf16'"):
        page.row_error("bf16")(older)
