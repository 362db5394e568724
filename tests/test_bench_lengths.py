"""benchmarks/bench_lengths.py: accuracy and CER by label length."""

import pytest

from benchmarks import bench_lengths


def test_buckets_split_by_normalized_label_length():
    labels = ["ab", "abc  d", "abcdefgh", "abcdefghijk"]  # lengths 2, 5 (spaces collapse), 8, 11
    texts = ["ab", "abc d", "abcdefgx", "abcdefghijk"]
    rows = bench_lengths.by_length(texts, labels, "exact", [0, 4, 10])
    assert [r["n"] for r in rows] == [1, 2, 1]
    assert rows[0]["acc"] == 1.0 and rows[0]["cer"] == 0.0
    assert rows[1]["acc"] == 0.5  # "abc d" right, one substitution in the 8-character line
    assert rows[1]["cer"] == pytest.approx(1 / 13)
    assert rows[2]["acc"] == 1.0
    assert bench_lengths.bucket_names([0, 4, 10]) == ["0-3", "4-9", "10+"]


def test_empty_bucket_is_nan_and_scene_protocol_counts_alphanumerics():
    rows = bench_lengths.by_length(["HELLO"], ["Hello!"], "scene", [0, 10])
    assert rows[0]["n"] == 1 and rows[0]["acc"] == 1.0
    assert rows[1]["n"] == 0 and rows[1]["acc"] != rows[1]["acc"]  # nan


def test_markdown():
    rows = bench_lengths.by_length(["ab", "x"], ["ab", "abcdef"], "exact", [0, 4])
    report = {
        "command": "python -m benchmarks.bench_lengths x",
        "buckets": [0, 4],
        "sets": [
            {
                "labelfile": "x",
                "protocol": "exact",
                "lines": 2,
                "rows": [{"engine": "m", "all": {"acc": 0.5, "cer": 0.75}, "buckets": rows}],
            }
        ],
    }
    md = bench_lengths.markdown(report)
    assert "| lines | 2 | 1 | 1 |" in md
    assert "| m | 50.0% (75.0%) | 100.0% (0.0%) | 0.0% (100.0%) |" in md


def test_bad_arguments_are_named(tmp_path, capsys):
    with pytest.raises(SystemExit):
        bench_lengths.main(["x.tsv", "--model", "a=missing.onnx", "--name", "t"])
    assert "missing.onnx" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench_lengths.main(["x.tsv", "--peers", "", "--buckets", "5,10", "--name", "t"])
    assert "--buckets" in capsys.readouterr().err
