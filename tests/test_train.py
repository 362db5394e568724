"""End-to-end: configs compose and instantiate, training runs, resumes, evaluates."""

import json
import os
import subprocess
import sys
from pathlib import Path

import hydra
import pytest
import torch
from omegaconf import OmegaConf

from distill.config import config_names as group_options
from distill.lit.recognizer import RecognizerModule
from distill.lit.train import build_module, evaluate, make_trainer, train

from .helpers import (
    NETS,
    ROOT,
    TEACHER_CHARS,
    TINY,
    TINY_STUDENT,
    TINY_SYNTH,
    compose_cfg,
    export_tiny,
    make_ckpt,
)


def _stand_in_sources(cfg, charset: str, root: Path) -> None:
    """Make the generated sources a data config names (PP-OCRv6's label caches, the real
    crops' val splits) as tiny stand-ins: a cache of the sample lines, the sample file."""
    import shutil

    samples = ROOT / "data" / "samples"
    for source in [*cfg.data.train, *cfg.data.val]:
        path = Path(source)
        if path.exists():
            continue
        if path.suffix in (".tsv", ".txt"):
            shutil.copytree(samples / "img", path.parent / "img")
            shutil.copy(samples / "gt.txt", path)
        else:
            cache = root / f"cache_{charset}"
            if not cache.exists():
                _cache(cache, charset)
            shutil.copytree(cache, path)


@pytest.mark.parametrize("data", group_options("data"))
def test_every_data_config_instantiates(data, tmp_path):
    # the sample label file shipped in data/samples is English: keep the ascii charset
    tiny = [o for o in TINY if not o.startswith("charset=")]
    charset = "zh" if data.endswith("_zh") else "ascii"
    generated = data.startswith("ppocrv6_")  # PP-OCRv6's caches (make ppocrv6-cache)
    over = [f"data={data}", *tiny, f"charset={charset}"]
    if generated:  # stand-ins under tmp_path
        over.append(f"paths.data_dir={tmp_path / 'data'}")
    cfg = compose_cfg("train", over, tmp_path)
    if generated:
        _stand_in_sources(cfg, charset, tmp_path)
    dm = hydra.utils.instantiate(cfg.data, _convert_="all")
    if data in ("synth",):
        dm.train_sources[0].keywords["size"] = 8  # keep the test quick
        dm.val_sources[0].keywords["size"] = 4
    if data == "mixed":
        dm.train_sources[0].keywords["size"] = 8
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["images"].shape[:3] == (batch["images"].shape[0], 1, 32)
    if generated:  # a cache's samples carry its teacher's outputs
        assert all(c is not None for c in batch["teacher_cache"])


MODELS = [m for m in group_options("model") if not m.endswith("_base")]


@pytest.mark.parametrize("model", MODELS)
def test_every_model_config_instantiates(model, tmp_path):
    cfg = compose_cfg("train", [f"model={model}"], tmp_path)
    module = build_module(cfg)
    p = module.preprocess_cfg
    logits, _ = module(torch.randn(2, p.channels, p.height, 64))
    assert logits.shape == (2, 64 // module.net.width_per_frame, 96)


def test_model_configs_are_named_by_architecture_over_a_shared_base(tmp_path):
    nets = {
        m: compose_cfg("train", [f"model={m}"], tmp_path).model.net
        for m in ("resnet34_crnn", "shufflenet_crnn", "teacher", "student")
    }
    assert nets["teacher"] == nets["resnet34_crnn"] and nets["student"] == nets["shufflenet_crnn"]
    assert nets["resnet34_crnn"].dropout == 0.1
    assert nets["shufflenet_crnn"].dropout == 0.0  # not inherited from the teacher
    with pytest.raises(Exception, match="backbone is not set"):
        build_module(compose_cfg("train", ["model=crnn_base"], tmp_path))


def _cache(path: Path, charset: str = "ascii") -> Path:
    """A teacher-label cache for ``charset``, written by a tiny ONNX teacher."""
    from distill.core.charset import Charset
    from distill.kd.onnx import OnnxTeacher
    from distill.kd.teach import source_items, teach

    onnx_path = export_tiny(path.parent / "tiny_rec.onnx", len(TEACHER_CHARS) + 2)
    teacher = OnnxTeacher(str(onnx_path), min_width=48, name="tiny")
    teacher.bind(Charset.resolve(charset), 32)
    items = source_items(str(ROOT / "data" / "samples" / "gt.txt"), Charset.resolve(charset))
    teach(teacher, items[:8], path, topk=3, progress=False)
    return path


@pytest.fixture(scope="module")
def stand_in_teacher(tmp_path_factory):
    """The overrides of a tiny stand-in for a teacher kind (the teachers the experiments
    name do not exist in a test), each made once for all the experiments."""

    root = tmp_path_factory.mktemp("teachers")
    made: dict[tuple, list[str]] = {}

    def overrides(kind: str, charset: str) -> list[str]:
        key = (kind, charset if kind == "CachedTeacher" else None)
        if key not in made:
            if kind == "CheckpointTeacher":
                made[key] = [f"teacher.ckpt={make_ckpt(root / 't.ckpt', NETS['teacher'])}"]
            elif kind == "CachedTeacher":
                made[key] = [f"teacher.path={_cache(root / f'cache_{charset}', charset)}"]
            else:
                path = export_tiny(root / "tiny_rec.onnx", len(TEACHER_CHARS) + 2)
                made[key] = [f"teacher.path={path}", "teacher.package=null", "teacher.min_width=48"]
        return made[key]

    return overrides


@pytest.mark.parametrize("experiment", group_options("experiment"))
def test_every_experiment_builds_the_module_it_trains(experiment, tmp_path, stand_in_teacher):
    """An experiment composes into the very module train() fits: a distillation
    experiment into a DistillationModule with its teacher, the others into the model
    they name, with the experiment's network, preprocessing and data."""
    from distill.kd.recipe import Recipe
    from distill.kd.teachers import teacher_requested
    from distill.lit.distillation import DistillationModule

    # generated data and teachers are looked for under tmp_path, where there are none
    base = [f"experiment={experiment}", f"paths.data_dir={tmp_path}"]
    cfg = compose_cfg("train", base, tmp_path)
    if OmegaConf.is_missing(cfg, "init_ckpt"):  # fine-tuning: a checkpoint of its network
        bare = compose_cfg("train", [*base, "init_ckpt=null", "teacher.ckpt=null"], tmp_path)
        module = build_module(bare)
        init = tmp_path / "init.ckpt"
        torch.save(
            {"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, init
        )
        base.append(f"init_ckpt={init}")
        cfg = compose_cfg("train", base, tmp_path)
    kind = cfg.teacher._target_.rsplit(".", 1)[-1] if "_target_" in cfg.teacher else None
    runs = []
    with_teacher = teacher_requested(cfg.teacher) and Recipe.from_config(cfg.kd).needs_teacher
    if not with_teacher:  # no teacher, or a recipe that uses none (kd=labels)
        runs.append((cfg, False))
    elif kind != "OnnxTeacher":  # (whether the ONNX one is installed depends on the machine)
        with pytest.raises(FileNotFoundError, match=r"not found"):  # names the missing file
            build_module(cfg)
    if with_teacher:
        over = stand_in_teacher(kind, cfg.charset)
        runs.append((compose_cfg("train", [*base, *over], tmp_path), True))
    elif experiment == "demo":  # the demo distills it from its label cache too
        over = stand_in_teacher("CachedTeacher", cfg.charset)
        runs.append((compose_cfg("train", [*base, "teacher=cache", *over], tmp_path), True))
    for run_cfg, distilled in runs:
        module = build_module(run_cfg)
        assert isinstance(module, DistillationModule) == distilled
        if distilled:
            key, _, value = over[0].partition("=")
            assert module.teacher.config[key.split(".")[1]] == value  # the stand-in teacher
            assert repr(module.loss).startswith("loss = 1*ctc")
        net = dict(module.hparams["net"])
        for key, value in run_cfg.model.net.items():  # backbone, hidden, ... or arch
            if key != "pruned_shapes":
                assert net[key] == value, key
        assert module.preprocess_cfg.to_dict() == dict(run_cfg.preprocess)
        assert module.charset.name == run_cfg.charset
        assert module.hparams["data"]["batch_size"] == run_cfg.data.batch_size


@pytest.mark.parametrize(
    "group, option",
    [(g, o) for g in ("trainer", "callbacks", "logger", "debug") for o in group_options(g)],
)
def test_every_other_config_instantiates(group, option, tmp_path):
    cfg = compose_cfg("train", [f"{group}={option}"], tmp_path)
    if group == "trainer":
        trainer_cfg = dict(cfg.trainer)
        if option in ("gpu", "ddp"):  # no GPU here: check it resolves and targets the Trainer
            assert trainer_cfg["accelerator"] == "gpu"
            return
        make_trainer(cfg.trainer, logger=False)
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


def test_overfit_tiny_batch(memorized_student):
    """Loss must collapse and the predictions on the memorized batch must become right."""
    model, batch = memorized_student["model"], memorized_student["batch"]
    with torch.no_grad():
        student = model.student_outputs(batch)
        loss_after = model.loss(student, None, batch)["loss"].item()
    preds, _ = model.decode(student.logits, student.frames)
    assert loss_after < 0.1 * memorized_student["loss_before"]
    correct = sum(p == t for p, t in zip(preds, batch["labels"]))
    assert correct >= len(preds) - 1, list(zip(preds, batch["labels"]))


def test_resume_from_last_and_eval(tmp_path, label_dir, capsys):
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
        "callbacks.throughput.print_every=3",
        "logger=tensorboard",
        f"data.test=[{label_dir}/gt.txt]",
    ]
    cfg = compose_cfg("train", base, tmp_path)
    metrics = train(cfg)
    # no terminal here: the progress reaches the log as plain lines
    printed = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("step ")]
    assert [ln.split(",")[0] for ln in printed] == ["step 3/6 (50%)", "step 6/6 (100%)"]
    assert " s/step, mean loss " in printed[0] and printed[0].endswith(" left")
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert last.is_file()
    # the best checkpoint was tested on data.test, named after the label file's folder
    assert 0.0 <= metrics[f"test/{label_dir.name}/acc"] <= 1.0
    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 6
    assert ckpt["hyper_parameters"]["charset"] == {"name": "digits", "chars": list("0123456789")}
    assert list((tmp_path / "tensorboard").glob("events.*"))

    first_part = json.loads((tmp_path / "metrics.json").read_text())["wall_time_s"]
    saved = [v for k, v in ckpt["callbacks"].items() if "WallClock" in k]
    assert saved and 0 < saved[0]["elapsed_s"] <= first_part + 0.1

    # resume: continues from step 6 to 9 instead of starting over
    cfg = compose_cfg(
        "train", [*base, "trainer.max_steps=9", "ckpt_path=last", "test=false"], tmp_path
    )
    train(cfg)
    printed = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("step ")]
    assert [ln.split(",")[0] for ln in printed] == ["step 9/9 (100%)"]
    resumed = torch.load(last, map_location="cpu", weights_only=False)
    assert resumed["global_step"] == 9
    # metrics.json's wall time covers both parts of the run, not the last one alone
    wall = json.loads((tmp_path / "metrics.json").read_text())["wall_time_s"]
    second = [v for k, v in resumed["callbacks"].items() if "WallClock" in k][0]["elapsed_s"]
    assert wall >= saved[0]["elapsed_s"] and wall >= second - 0.1 > saved[0]["elapsed_s"]

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
    kept = json.loads((tmp_path / "eval.json").read_text())
    assert kept["results"] == results and kept["protocol"] == "exact"
    assert kept["ckpt"]["size"] == last.stat().st_size


def test_warmup_cosine_schedule_hand_computed():
    from distill.lit.schedules import warmup_cosine

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    sched = warmup_cosine(opt, total_steps=100, warmup_ratio=0.1, min_lr_ratio=0.01)
    lrs = []
    for _ in range(101):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    # warm-up: 10 steps, (step + 1) / 10 of the base LR
    assert lrs[0] == pytest.approx(0.2) and lrs[4] == pytest.approx(1.0)
    assert lrs[9] == pytest.approx(2.0) and lrs[10] == pytest.approx(2.0)
    # cosine from step 10 to 100: half-way (step 55) is 0.01 + 0.99 * 0.5 of the base LR
    assert lrs[55] == pytest.approx(2.0 * (0.01 + 0.99 * 0.5))
    # a third of the way (step 40): 0.01 + 0.99 * 0.5 * (1 + cos(pi / 3)) = 0.7525
    assert lrs[40] == pytest.approx(2.0 * 0.7525)
    assert lrs[100] == pytest.approx(2.0 * 0.01)


def test_precision_auto_follows_the_hardware(monkeypatch):
    import distill.lit.train as training

    monkeypatch.setattr(training, "native_bf16", lambda accelerator: True)
    assert training.resolve_precision("auto") == "bf16-mixed"
    monkeypatch.setattr(training, "native_bf16", lambda accelerator: False)
    assert training.resolve_precision("auto") == "32-true"
    # what the user sets is kept, whatever the hardware
    assert training.resolve_precision("bf16-mixed") == "bf16-mixed"
    assert training.resolve_precision("32-true") == "32-true"


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_mid_epoch_goes_on_with_the_next_batch(workers, tmp_path, monkeypatch):
    """Stopped at step 6 of 9 (epoch 1, batch 2 of 4), a resumed run trains on the same
    batches, in the same order, as a run that was never stopped."""
    seen: list[tuple[str, ...]] = []

    def record(module, batch, batch_idx):
        seen.append(tuple(batch["labels"]))

    monkeypatch.setattr(RecognizerModule, "on_train_batch_start", record, raising=False)
    base = [
        "debug=limit",
        *TINY,
        *TINY_SYNTH,  # 32 lines in batches of 8: 4 batches an epoch
        *TINY_STUDENT,
        f"data.num_workers={workers}",
        "trainer.limit_val_batches=0",
        "trainer.val_check_interval=null",
        "callbacks=default",
        "test=false",
    ]
    train(compose_cfg("train", [*base, "trainer.max_steps=9"], tmp_path / "straight"))
    straight, seen[:] = list(seen), []

    stopped = tmp_path / "stopped"
    train(compose_cfg("train", [*base, "trainer.max_steps=6"], stopped))
    cfg = compose_cfg("train", [*base, "trainer.max_steps=9", "ckpt_path=last"], stopped)
    train(cfg)
    assert len(straight) == 9 and len(set(straight[:4])) == 4
    assert seen == straight


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


def test_progress_line_prints_the_mean_loss_since_the_previous_line(monkeypatch, capsys):
    """One step's loss swings with its lines' lengths: the printed figure is the mean of
    every step since the previous line, not the last step's."""
    from types import SimpleNamespace

    from distill.lit.callbacks import ThroughputMonitor

    monkeypatch.setattr("sys.stdout.isatty", lambda: False)
    mon = ThroughputMonitor(print_every=2)
    trainer = SimpleNamespace(global_step=0, max_steps=4, is_global_zero=True, world_size=1)
    module = SimpleNamespace(log=lambda *a, **k: None)
    for step, loss in enumerate([100.0, 1.0, 3.0, 10.0, 30.0], start=0):
        trainer.global_step = step  # the step count after this batch
        mon.on_train_batch_end(trainer, module, {"loss": torch.tensor(loss)}, {"labels": ["a"]}, 0)
    printed = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("step ")]
    # step 0 only marks the start; steps 1-2 and 3-4 each make one line
    assert [ln.split(",")[0] for ln in printed] == ["step 2/4 (50%)", "step 4/4 (100%)"]
    assert "mean loss 2.000" in printed[0] and "mean loss 20.000" in printed[1]
