"""A distillation recipe: the ``kd`` config (``distill/conf/kd/*.yaml``) read once.

    kd:
      ctc_target: auto        # label | teacher | auto (distill.kd.targets)
      min_confidence: 0.5     # a teacher reading below this is no CTC target
      terms:                  # the loss: sum of weight * term
        ctc: {_target_: distill.kd.losses.CTCTerm, weight: 1.0}
        kl: {_target_: distill.kd.losses.FrameKL, weight: 1.0, tau: 1.0}

The shape of PaddleOCR's ``Loss.loss_config_list``, summed like torchdistill's
``WeightedSumLoss`` over its ``sub_terms``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from distill.kd.losses import WeightedSumLoss
from distill.kd.targets import CTC_TARGETS

KEYS = ("ctc_target", "min_confidence", "terms")


@dataclass
class Recipe:
    terms: dict = field(default_factory=dict)
    ctc_target: str = "label"
    min_confidence: float = 0.0

    @classmethod
    def from_config(cls, kd) -> Recipe:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(kd, DictConfig):
            kd = OmegaConf.to_container(kd, resolve=True)
        kd = dict(kd or {})
        unknown = sorted(set(kd) - set(KEYS))
        if unknown:
            raise ValueError(
                f"kd: unknown setting(s) {unknown}; a recipe has {list(KEYS)} (the terms' "
                "settings are kd.terms.NAME.*, e.g. kd.terms.kl.tau=1)"
            )
        recipe = cls(dict(kd.get("terms") or {}), kd.get("ctc_target", "label"))
        recipe.min_confidence = float(kd.get("min_confidence", 0.0))
        if recipe.ctc_target not in CTC_TARGETS:
            raise ValueError(
                f"kd.ctc_target must be one of {CTC_TARGETS}, got {recipe.ctc_target!r}"
            )
        if not recipe.terms:
            raise ValueError("kd.terms is empty: a recipe needs at least one loss term")
        return recipe

    def build_loss(self) -> WeightedSumLoss:
        return WeightedSumLoss.from_config(self.terms)

    @property
    def needs_teacher(self) -> bool:
        """Whether a teacher takes part: a term reads it, or CTC targets come from it."""
        return self.ctc_target != "label" or self.build_loss().uses_teacher

    def to_dict(self) -> dict:
        return {
            "ctc_target": self.ctc_target,
            "min_confidence": self.min_confidence,
            "terms": self.terms,
        }
