"""Where the Hydra configs live, and composing them outside an entry point.

The configs ship inside the package (``distill/conf``), so an installed wheel trains,
exports and teaches exactly as a clone does; the entry points (train.py, ``distill-train``)
and everything that needs a config group by name (``distill.kd.teach --teacher onnx``, the
tests) read them from here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the base install (reading only) has no Hydra
    from omegaconf import DictConfig

CONF_DIR = Path(__file__).resolve().parent / "conf"


def compose(name: str, overrides: list[str] = (), return_hydra_config: bool = False) -> DictConfig:
    """The config ``name`` (train, export, ...) composed with ``overrides`` as Hydra's
    command line would, defaults lists included."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return hydra_compose(
            name, overrides=list(overrides), return_hydra_config=return_hydra_config
        )


def config_names(group: str) -> list[str]:
    """The choices of a config group, e.g. ``config_names("teacher")``."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
