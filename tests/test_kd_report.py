"""benchmarks/kd_report.py: the distillation table, its targets and learning curves."""

import json
import os
from pathlib import Path

import pytest

from benchmarks import kd_report
from distill.lit.train import file_identity


def fake_run(run: Path, synth_acc: float, dev_acc: float, curve: list[float], devset: Path):
    """A finished run as train.py and eval.py leave it (checkpoint, metrics, eval, events)."""
    from torch.utils.tensorboard import SummaryWriter

    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    (run / ".hydra").mkdir()
    (run / ".hydra" / "overrides.yaml").write_text(f"- experiment=x\n- hydra.run.dir={run}\n")
    metrics = {"val/acc": synth_acc, "val/cer": 1 - synth_acc, "val/ned": synth_acc}
    summary = {"metrics": metrics, "steps": 20, "wall_time_s": 60.0, "params": 1000}
    (run / "metrics.json").write_text(json.dumps(summary))
    writer = SummaryWriter(str(run / "tensorboard"))
    for i, acc in enumerate(curve):
        writer.add_scalar("val/acc", acc, (i + 1) * 10 - 1)
    writer.close()
    ev = run / "eval_dev"
    ev.mkdir()
    result = {"n": 4, "acc": dev_acc, "cer": 1 - dev_acc, "ned": dev_acc, "acc_nospace": dev_acc}
    # what eval.py keeps: the evaluation of this checkpoint, dev set and protocol
    kept = {
        "ckpt": file_identity(run / "checkpoints" / "last.ckpt"),
        "test": [file_identity(devset)],
        "protocol": "scene",
        "results": {"dev": result},
    }
    (ev / "eval.json").write_text(json.dumps(kept))


def test_report_table_targets_and_curves(tmp_path, monkeypatch):
    devset = tmp_path / "dev" / "labels.tsv"
    devset.parent.mkdir()
    devset.write_text("a.png\tA\n")
    fake_run(tmp_path / "t", 0.70, 0.30, [0.5, 0.7], devset)
    fake_run(tmp_path / "kd", 0.69, 0.25, [0.4, 0.69], devset)
    fake_run(tmp_path / "b", 0.60, 0.24, [0.2, 0.6], devset)
    monkeypatch.setattr(kd_report, "RESULTS", tmp_path / "results")
    argv = ["--teacher", str(tmp_path / "t"), "--kd", str(tmp_path / "kd")]
    argv += ["--baseline", str(tmp_path / "b"), "--devset", str(devset), "--name", "x"]
    assert kd_report.main([*argv, "--note", "a test"]) == 0

    report = json.loads((tmp_path / "results" / "x.json").read_text())
    synth, dev = report["verdict"]["synth_val"], report["verdict"]["devset"]
    assert synth["gain_over_baseline"] == pytest.approx(0.09)
    assert synth["beats_baseline_by_2pts"] and synth["within_2pts_of_teacher"]
    assert not dev["beats_baseline_by_2pts"]  # 25% vs 24%: one point only
    assert not dev["within_2pts_of_teacher"]  # 5 points below the teacher
    assert report["runs"]["kd"]["curves"]["val/acc"] == [[9, 0.4], [19, 0.69]]
    assert report["runs"]["kd"]["commands"]["train"].startswith("python train.py experiment=x")

    md = (tmp_path / "results" / "x.md").read_text()
    assert "a test" in md
    assert "| student, distilled | 0.00 | 20 | 1.0 | 69.0% | 31.0% | 25.0% | 75.0% |" in md
    assert "| distilled | 40.0% | 69.0% |" in md


def test_unfinished_run_is_named(tmp_path):
    devset = tmp_path / "labels.tsv"
    devset.write_text("a.png\tA\n")
    with pytest.raises(FileNotFoundError, match="metrics.json"):
        kd_report.summarize("kd", tmp_path / "missing", devset, "scene")


def test_cached_evaluation_is_reused_only_for_the_same_ckpt_devset_and_protocol(tmp_path):
    devset = tmp_path / "dev" / "labels.tsv"
    devset.parent.mkdir()
    devset.write_text("a.png\tA\n")
    run = tmp_path / "kd"
    fake_run(run, 0.5, 0.5, [0.5], devset)
    ckpt, kept = run / "checkpoints" / "last.ckpt", run / "eval_dev" / "eval.json"
    assert kd_report.cached_eval_matches(kept, ckpt, devset, "scene")
    assert not kd_report.cached_eval_matches(kept, ckpt, devset, "exact")

    other = tmp_path / "other" / "labels.tsv"
    other.parent.mkdir()
    other.write_text("a.png\tA\n")
    assert not kd_report.cached_eval_matches(kept, ckpt, other, "scene")

    devset.write_text("a.png\tA\nb.png\tB\n")  # the dev set changed
    assert not kd_report.cached_eval_matches(kept, ckpt, devset, "scene")
    fake_run(tmp_path / "kd2", 0.5, 0.5, [0.5], devset)
    ckpt2, kept2 = (
        tmp_path / "kd2" / "checkpoints" / "last.ckpt",
        tmp_path / "kd2" / "eval_dev" / "eval.json",
    )
    assert kd_report.cached_eval_matches(kept2, ckpt2, devset, "scene")
    ckpt2.write_bytes(b"retrained")  # training went on: the old evaluation is stale
    assert not kd_report.cached_eval_matches(kept2, ckpt2, devset, "scene")
    old = ckpt2.stat()
    os.utime(ckpt2, (old.st_atime, old.st_mtime + 10))
    assert not kd_report.cached_eval_matches(kept2, ckpt2, devset, "scene")
