"""bench_infer's latency column: which engine the others are divided by."""

import pytest

from benchmarks.bench_infer import latency_reference


def rows(*names):
    return [{"engine": n} for n in names]


def test_latencies_are_relative_to_the_wheels_pp_ocrv6_when_it_ran():
    ours_first = rows("PP-OCRv6 ascii h48", "en_student", "PP-OCRv6 rec", "PP-OCRv4 rec")
    assert latency_reference(ours_first, None)["engine"] == "PP-OCRv6 rec"
    assert latency_reference(rows("en_student", "PP-OCRv6 ascii"), None)["engine"] == (
        "PP-OCRv6 ascii"
    )
    assert latency_reference(rows("en_student", "PP-OCRv4 rec"), None)["engine"] == "PP-OCRv4 rec"
    assert latency_reference(rows("en_student"), None) is None


def test_a_chosen_reference_must_be_an_engine_of_the_run():
    run = rows("a", "b", "PP-OCRv6 rec")
    assert latency_reference(run, "b") is run[1]
    with pytest.raises(SystemExit, match="'c' is not an engine of this run"):
        latency_reference(rows("a", "b"), "c")
