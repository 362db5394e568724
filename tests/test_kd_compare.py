"""benchmarks/kd_compare.py: runs side by side, and their means over seeds."""

import pytest

from benchmarks import kd_compare


def run(title: str, val_acc: float, dev_acc: float) -> dict:
    return {
        "title": title,
        "steps": 30,
        "wall_time_s": 60.0,
        "val": {"acc": val_acc, "cer": 1 - val_acc},
        "devsets": {"set_a": {"acc": dev_acc, "cer": 1 - dev_acc, "eval": "python eval.py"}},
        "train": f"python train.py # {title}",
    }


def test_runs_differing_only_by_seed_are_averaged():
    runs = [
        run("teacher seed 12345", 0.5, 0.40),
        run("labels only seed 12345", 0.4, 0.30),
        run("teacher seed 2", 0.7, 0.60),
        run("labels only seed 2", 0.2, 0.10),
        run("seedless", 0.9, 0.9),  # one run: no mean row
    ]
    means = kd_compare.seed_means(runs)
    assert [(g["title"], g["runs"]) for g in means] == [("teacher", 2), ("labels only", 2)]
    assert means[0]["val"]["acc"] == pytest.approx(0.6)
    assert means[0]["devsets"]["set_a"]["acc"] == pytest.approx(0.5)
    assert means[1]["devsets"]["set_a"]["cer"] == pytest.approx(0.8)


def test_markdown_has_the_mean_table_only_when_there_are_seeds():
    runs = [run("teacher seed 1", 0.5, 0.4), run("teacher seed 2", 0.7, 0.6)]
    report = {
        "name": "x",
        "devsets": [("d/set_a/labels.tsv", "exact")],
        "runs": runs,
        "seed_means": kd_compare.seed_means(runs),
        "command": "python -m benchmarks.kd_compare --name x",
    }
    md = kd_compare.markdown(report)
    assert "Mean over seeds:" in md
    assert "| teacher | 2 | 60.0% | 40.0% | 50.0% | 50.0% |" in md
    single = {**report, "runs": runs[:1], "seed_means": kd_compare.seed_means(runs[:1])}
    assert "Mean over seeds" not in kd_compare.markdown(single)


def test_train_command_leaves_out_the_resume(tmp_path):
    from benchmarks import kd_report

    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(
        f"- experiment=zh_v2_gain_labels\n- hydra.run.dir={run}\n- seed=12345\n- ckpt_path=last\n"
    )
    cmd = kd_report.train_command(run)
    assert cmd.startswith("python train.py experiment=zh_v2_gain_labels hydra.run.dir=")
    assert cmd.endswith(" seed=12345") and "ckpt_path" not in cmd
    assert kd_report.train_command(tmp_path / "none").startswith("(unknown: ")
