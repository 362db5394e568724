"""The accuracy-latency front (benchmarks/front.py) and the family bench_infer gives each
of our models: what a user picks a model for a latency budget from."""

import json

import onnx
import pytest
from onnx import TensorProto, helper

from benchmarks import front
from benchmarks.bench_infer import model_family


def row(engine, ms, acc, family):
    return {"engine": engine, "ms_line_1thread": ms, "acc": acc, "family": family}


def result(*rows, ours=()):
    return {"labelfile": "x/labels.tsv", "lines": 10, "protocol": "exact",
            "our_models": {e: f"{e}.onnx" for e in ours}, "rows": list(rows)}  # fmt: skip


def write(tmp_path, name, res):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(res))
    return front.load_set(str(path))


@pytest.fixture
def two_sets(tmp_path):
    a = result(
        row("PP-OCRv6 rec", 10.0, 0.95, "peer"),
        row("big", 5.0, 0.90, "ppocrv6"),
        row("small", 1.0, 0.70, "shufflenet_v2"),
        row("slow and worse", 8.0, 0.80, "ppocrv6"),
        row("Tesseract", 50.0, 0.60, "peer"),
    )
    b = result(
        row("PP-OCRv6 rec", 20.0, 0.80, "peer"),
        row("big", 6.0, 0.85, "ppocrv6"),  # 0.3x here: outside a 0.25x budget
        row("small", 3.0, 0.60, "shufflenet_v2"),
        row("slow and worse", 9.0, 0.50, "ppocrv6"),
        row("Tesseract", 40.0, 0.70, "peer"),
    )
    return {"a": write(tmp_path, "a", a), "b": write(tmp_path, "b", b)}


def test_latency_is_a_multiple_of_the_wheels_pp_ocrv6_in_the_same_run(two_sets):
    ratios = {r["engine"]: r["ratio"] for r in two_sets["b"]["rows"]}
    assert ratios["PP-OCRv6 rec"] == 1.0 and ratios["big"] == pytest.approx(0.3)


def test_the_front_holds_the_engines_nothing_beats_on_both(two_sets):
    assert front.on_front(two_sets["a"]["rows"]) == {"PP-OCRv6 rec", "big", "small"}


def test_a_budget_picks_the_most_accurate_model_within_it_on_every_set(two_sets):
    within_half = front.best_within(two_sets, 0.5, ours=True)
    assert within_half["engine"] == "big" and within_half["acc"] == [0.90, 0.85]
    within_quarter = front.best_within(two_sets, 0.25, ours=True)  # big is 0.3x on set b
    assert within_quarter["engine"] == "small"
    assert front.best_within(two_sets, 0.05, ours=True) is None
    assert front.best_within(two_sets, 1.0, ours=False)["engine"] == "PP-OCRv6 rec"


def test_the_report_and_picture_are_written(two_sets, tmp_path, monkeypatch):
    monkeypatch.setattr(front, "RESULTS", tmp_path)
    monkeypatch.setattr("benchmarks.results_io.RESULTS", tmp_path)
    files = [two_sets[k]["file"] for k in ("a", "b")]
    front.main(["--name", "t", "--set", f"A={files[0]}", "--set", f"B={files[1]}",
                "--budgets", "0.25,0.5"])  # fmt: skip
    md = (tmp_path / "front_t.md").read_text()
    assert "| <= 0.25x | small | ShuffleNetV2-BiLSTM student | 70.0% | 60.0% | 0.15x |" in md
    assert (tmp_path / "front_t.png").stat().st_size > 10_000


def test_a_set_joins_runs_of_the_same_lines_each_against_its_own_wheel(tmp_path):
    """Rows of several runs of one set, each latency over its own run's wheel; the newest
    run's figures win for an engine read twice; runs of different lines are refused."""
    first = result(row("PP-OCRv6 rec", 10.0, 0.95, "peer"), row("big", 5.0, 0.9, "ppocrv6"))
    later = result(row("PP-OCRv6 rec", 20.0, 0.94, "peer"), row("big", 4.0, 0.7, "ppocrv6"),
                   row("new", 2.0, 0.8, "ppocrv6"))  # fmt: skip
    (tmp_path / "f.json").write_text(json.dumps(first))
    (tmp_path / "l.json").write_text(json.dumps(later))
    joined = front.load_set(f"{tmp_path}/f.json+{tmp_path}/l.json")
    rows = {r["engine"]: r for r in joined["rows"]}
    assert len(joined["rows"]) == 3  # the later run's wheel and "big" replace the first's
    assert rows["big"]["ratio"] == 0.2 and rows["new"]["ratio"] == 0.1
    assert rows["new"]["run"] == rows["big"]["run"] == "l.json"
    first = result(row("PP-OCRv6 rec", 10.0, 0.95, "peer"), row("old", 5.0, 0.9, "ppocrv6"))
    (tmp_path / "f.json").write_text(json.dumps(first))
    kept = front.load_set(f"{tmp_path}/f.json+{tmp_path}/l.json")
    assert {r["engine"]: r["run"] for r in kept["rows"]}["old"] == "f.json"
    assert {r["engine"]: r["ratio"] for r in kept["rows"]}["old"] == 0.5
    md = front.markdown({"S": joined}, [])
    assert "each row's latency over the wheel's in its own run" in md
    assert "| new | PP-OCRv6, compressed here | 0.10 | 2.00 | - | 80.0% | yes | l.json |" in md
    other = dict(later, lines=11)
    (tmp_path / "o.json").write_text(json.dumps(other))
    with pytest.raises(SystemExit, match="read lines 11.*not the same set"):
        front.load_set(f"{tmp_path}/f.json+{tmp_path}/o.json")


def test_a_set_without_the_wheel_is_refused_by_name(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(result(row("big", 5.0, 0.9, "ppocrv6"))))
    with pytest.raises(SystemExit, match=r"r\.json: no 'PP-OCRv6 rec' row"):
        front.load_set(str(path))
    with pytest.raises(SystemExit, match="no bench_infer result"):
        front.load_set(str(tmp_path / "missing.json"))


def test_our_models_are_told_apart_by_their_metadata(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )  # fmt: skip
    for net, family in (({"arch": "ppocrv6"}, "ppocrv6"),
                        ({"backbone": "shufflenet_v2"}, "shufflenet_v2")):  # fmt: skip
        model = helper.make_model(graph)
        helper.set_model_props(model, {"train_config": json.dumps({"net": net})})
        onnx.save(model, tmp_path / "m.onnx")
        assert model_family(tmp_path / "m.onnx") == family
