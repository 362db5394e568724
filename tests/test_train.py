"""End-to-end: configs compose and instantiate, training runs, resumes, evaluates."""

import json
import os
import subprocess
import sys
from pathlib import Path

import hydra
import lightning as L
import pytest
import torch

from distill.module import RecognizerModule
from distill.training import evaluate, train

from .conftest import ROOT, TINY, TINY_STUDENT, TINY_SYNTH, compose_cfg

CONF = ROOT / "conf"


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("data", group_options("data"))
def test_every_data_config_instantiates(data, tmp_path):
    # the sample label file shipped in data/samples is English: keep the ascii charset
    tiny = [o for o in TINY if not o.startswith("charset=")]
    cfg = compose_cfg("train", [f"data={data}", *tiny], tmp_path)
    dm = hydra.utils.instantiate(cfg.data, _convert_="all")
    if data in ("synth",):
        dm.train_sources[0].keywords["size"] = 8  # keep the test quick
        dm.val_sources[0].keywords["size"] = 4
    if data == "mixed":
        dm.train_sources[0].keywords["size"] = 8
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["images"].shape[:3] == (batch["images"].shape[0], 1, 32)


@pytest.mark.parametrize("model", group_options("model"))
def test_every_model_config_instantiates(model, tmp_path):
    cfg = compose_cfg("train", [f"model={model}"], tmp_path)
    module = hydra.utils.instantiate(cfg.model, _recursive_=False)
    logits, _ = module(torch.randn(2, 1, 32, 64))
    assert logits.shape == (2, 16, 96)


@pytest.mark.parametrize(
    "group, option",
    [
        (g, o)
        for g in ("trainer", "callbacks", "logger", "debug", "experiment")
        for o in group_options(g)
    ],
)
def test_every_other_config_instantiates(group, option, tmp_path):
    cfg = compose_cfg("train", [f"{group}={option}"], tmp_path)
    if group == "trainer":
        trainer_cfg = dict(cfg.trainer)
        if option in ("gpu", "ddp"):  # no GPU here: check it resolves and targets the Trainer
            assert trainer_cfg["accelerator"] == "gpu"
            return
        hydra.utils.instantiate(cfg.trainer, logger=False)
    elif group in ("callbacks", "logger"):
        objs = [hydra.utils.instantiate(c) for c in (cfg.get(group) or {}).values()]
        assert option == "none" or objs
    else:
        hydra.utils.instantiate(cfg.model, _recursive_=False)
        hydra.utils.instantiate(cfg.data, _convert_="all")


@pytest.mark.parametrize("model", [["model=teacher"], TINY_STUDENT])
def test_fast_dev_run(model, tmp_path):
    cfg = compose_cfg("train", ["debug=fdr", *TINY, *TINY_SYNTH, *model], tmp_path)
    metrics = train(cfg)
    assert "val/acc" in metrics and torch.isfinite(torch.tensor(metrics["train/loss"]))


def test_overfit_tiny_batch(tmp_path):
    """Loss must collapse and the predictions on the memorized batch must become right."""
    cfg = compose_cfg(
        "train",
        [
            "debug=overfit",
            *TINY,
            *TINY_SYNTH,
            *TINY_STUDENT,
            "data.train.size=8",
            "data.train.deterministic=true",
            "trainer.overfit_batches=1",
            "trainer.max_steps=250",
            "model.optimizer.lr=3e-3",
            "model.net.hidden=64",
            "callbacks=none",
            "test=false",
        ],
        tmp_path,
    )
    L.seed_everything(cfg.seed)
    datamodule = hydra.utils.instantiate(cfg.data, _convert_="all")
    model = hydra.utils.instantiate(cfg.model, _recursive_=False)
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    model.eval()
    with torch.no_grad():
        loss_before = model._supervised_loss(model(batch["images"])[0], batch)[0].item()
    model.train()  # Lightning keeps the train/eval mode it is handed
    trainer = hydra.utils.instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    trainer.fit(model, datamodule=datamodule)
    model.eval()
    with torch.no_grad():
        logits, _ = model(batch["images"])
        loss_after = model._supervised_loss(logits, batch)[0].item()
    preds, _ = model.decode(logits, batch["widths"])
    assert loss_after < 0.1 * loss_before
    correct = sum(p == t for p, t in zip(preds, batch["labels"]))
    assert correct >= len(preds) - 1, list(zip(preds, batch["labels"]))


def test_resume_from_last_and_eval(tmp_path, label_dir):
    base = [
        "debug=limit",
        *TINY,
        *TINY_SYNTH,
        *TINY_STUDENT,
        "trainer.max_steps=6",
        "trainer.limit_train_batches=3",
        "trainer.val_check_interval=3",
        "trainer.limit_val_batches=1",
        "callbacks=default",
        "logger=tensorboard",
        f"data.test=[{label_dir}/gt.txt]",
    ]
    cfg = compose_cfg("train", base, tmp_path)
    metrics = train(cfg)
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert last.is_file()
    # the best checkpoint was tested on data.test, named after the label file's folder
    assert 0.0 <= metrics[f"test/{label_dir.name}/acc"] <= 1.0
    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 6
    assert ckpt["hyper_parameters"]["charset"] == {"name": "digits", "chars": list("0123456789")}
    assert list((tmp_path / "tensorboard").glob("events.*"))

    # resume: continues from step 6 to 9 instead of starting over
    cfg = compose_cfg(
        "train", [*base, "trainer.max_steps=9", "ckpt_path=last", "test=false"], tmp_path
    )
    train(cfg)
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == 9

    # the checkpoint alone rebuilds the recognizer
    module = RecognizerModule.load_from_checkpoint(last, map_location="cpu", weights_only=False)
    assert module.charset.chars == list("0123456789")

    cfg = compose_cfg(
        "eval",
        [f"ckpt_path={last}", f"data.test=[{label_dir}/gt.txt]", "data.num_workers=0"],
        tmp_path,
    )
    results = evaluate(cfg)
    ((name, r),) = results.items()
    assert r["n"] == 6 and 0.0 <= r["acc"] <= 1.0 and set(r) >= {"acc", "acc_nospace", "cer", "ned"}


def test_resume_last_without_checkpoint_is_a_clear_error(tmp_path):
    cfg = compose_cfg("train", ["debug=fdr", *TINY, *TINY_SYNTH, "ckpt_path=last"], tmp_path)
    with pytest.raises(FileNotFoundError, match="last.ckpt"):
        train(cfg)


def run(args, tmp_path, timeout=600):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_eval_cli_prints_json(tmp_path, label_dir):
    cfg = compose_cfg(
        "train",
        [
            "debug=limit",
            *TINY,
            *TINY_SYNTH,
            "trainer.max_steps=2",
            "trainer.val_check_interval=2",
            "test=false",
        ],
        tmp_path,
    )
    train(cfg)
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    out = run(
        [
            "eval.py",
            f"ckpt_path={ckpt}",
            f"data.test=[{label_dir}/gt.txt]",
            "data.num_workers=0",
            f"hydra.run.dir={tmp_path}/eval",
        ],
        tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    payload = json.loads(out.stdout[out.stdout.index("{") :])
    assert payload[label_dir.name]["n"] == 6
    kept = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert kept["results"] == payload and kept["ckpt_path"] == str(ckpt)


def test_ddp_two_cpu_processes(tmp_path):
    """Lightning DDP (gloo) with two CPU processes, launched the way users launch it."""
    out = run(
        [
            "train.py",
            "trainer=ddp",
            "trainer.accelerator=cpu",
            "trainer.devices=2",
            "trainer.precision=32-true",
            "trainer.sync_batchnorm=false",
            "debug=limit",
            "trainer.max_steps=4",
            "trainer.val_check_interval=2",
            *TINY,
            *TINY_SYNTH,
            *TINY_STUDENT,
            "callbacks=model_checkpoint",
            f"hydra.run.dir={tmp_path}",
            "test=false",
        ],
        tmp_path,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    ckpt = torch.load(
        Path(tmp_path) / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False
    )
    assert ckpt["global_step"] == 4
    assert "distributed_backend=gloo" in out.stderr + out.stdout


def test_compare_table(tmp_path):
    from distill.compare import main, table

    for name, acc in (("a", 0.5), ("b", 0.25)):
        (tmp_path / name).mkdir()
        summary = {
            "metrics": {"val/acc": acc, "val/cer": 0.1, "val/ned": 0.9},
            "params": 2.5e6,
            "steps": 10,
            "wall_time_s": 90,
            "best_val_acc": acc,
        }
        (tmp_path / name / "metrics.json").write_text(json.dumps(summary))
    from distill.compare import load_runs

    text = table(load_runs([f"teacher={tmp_path / 'a'}", str(tmp_path / "b")]), markdown=True)
    lines = text.splitlines()
    assert lines[0].startswith("| run | params (M)")
    assert "| teacher | 2.50 | 10 | 1.5 | 50.0% | 10.0% | 90.0% | 50.0% |" in lines
    assert lines[3].startswith("| b |")
    with pytest.raises(FileNotFoundError, match="did that training run finish"):
        main([str(tmp_path / "missing")])
