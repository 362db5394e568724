"""The built wheel, installed non-editable in a fresh virtual environment: it must carry
its charsets and configs, install without torch, and read a line from its console
script. (A clone hides what a wheel lacks: the files sit beside the package there.)"""

import os
import subprocess
import sys
import zipfile

import pytest

from .helpers import ROOT

pytestmark = pytest.mark.slow


def run(cmd, cwd, **kw) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, **kw)
    assert res.returncode == 0, f"{cmd}\n{res.stdout}\n{res.stderr}"
    return res


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    # the build backend of this environment (no download of setuptools per build)
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            out,
            ROOT,
        ],
        cwd=out,
    )
    (path,) = out.glob("distill-*.whl")
    return path


def test_the_wheel_carries_charsets_and_configs(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for f in (
        "distill/charsets/ascii.txt",
        "distill/charsets/zh.txt",
        "distill/conf/train.yaml",
        "distill/conf/teacher/onnx.yaml",
        "distill/conf/experiment/demo.yaml",
        "distill/runtime/serve/page.html",
    ):
        assert f in names, f
    assert not any(n.startswith(("tests/", "benchmarks/")) for n in names)


def test_a_fresh_install_reads_a_line_and_resolves_the_builtin_charsets(wheel, tmp_path):
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", venv], cwd=tmp_path)
    pip = [venv / "bin" / "python", "-m", "pip", "--disable-pip-version-check", "-q"]
    run([*pip, "install", wheel], cwd=tmp_path)
    listed = run([*pip, "list"], cwd=tmp_path).stdout.lower()
    assert "torch " not in listed  # reading needs no torch
    # from a folder outside the clone: nothing may come from the source tree
    res = run(
        [
            venv / "bin" / "distill-predict",
            ROOT / "models" / "en_student.onnx",
            ROOT / "data" / "samples" / "gt.txt",
        ],
        cwd=tmp_path,
    )
    print(res.stdout)
    assert '"acc"' in res.stdout and "img/000.png" in res.stdout
    check = (
        "import distill, distill.core.charset as c, distill.config as k; "
        "assert 'site-packages' in distill.__file__, distill.__file__; "
        "print(len(c.Charset.resolve('ascii')), len(c.Charset.resolve('zh')), "
        "(k.CONF_DIR / 'train.yaml').is_file())"
    )
    res = run([venv / "bin" / "python", "-c", check], cwd=tmp_path)
    print(res.stdout)
    ascii_n, zh_n, conf = res.stdout.split()
    assert int(ascii_n) == 95 and int(zh_n) > 6000 and conf == "True"


def test_the_training_entry_point_runs_outside_a_clone(tmp_path):
    """``distill-train`` is distill.entry:train: from any folder it finds its configs in
    the package and writes its run under that folder (paths.root_dir)."""
    from .helpers import TINY, TINY_STUDENT, TINY_SYNTH

    env = {k: v for k, v in os.environ.items() if k != "PROJECT_ROOT"}
    res = run(
        [
            sys.executable,
            "-c",
            "from distill.entry import train; train()",
            "debug=fdr",
            *TINY,
            *TINY_SYNTH,
            *TINY_STUDENT,
            "hydra.run.dir=run",
        ],
        cwd=tmp_path,
        env=env,
    )
    saved = (tmp_path / "run" / ".hydra" / "config.yaml").read_text()
    assert "charset: digits" in saved, res.stdout[-2000:]
