"""Training-time augmentation with albumentations (never applied to validation or test)."""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np

# the transforms, in the order they are applied; their probabilities live in the data
# configs (distill/conf/data/*.yaml, ``augment:``), the one place that sets them
TRANSFORMS = (
    "gaussian_blur",
    "motion_blur",
    "salt_pepper",
    "perspective",
    "brightness_contrast",
    "jpeg",
    "rotate",
)


class Augmenter:
    """Wraps an albumentations pipeline whose per-transform probabilities come from config.

    A transform not named, or with probability 0, is off; unknown names are an error so
    a typo in a config does not silently disable augmentation.
    """

    def __init__(self, **probs: float):
        unknown = set(probs) - set(TRANSFORMS)
        if unknown:
            raise ValueError(
                f"unknown augmentation(s) {sorted(unknown)}; known: {list(TRANSFORMS)}"
            )
        self.probs = {k: float(probs.get(k, 0.0)) for k in TRANSFORMS}
        p = self.probs
        factories = {
            "gaussian_blur": lambda q: A.GaussianBlur(
                blur_limit=(3, 5), sigma_limit=(0.3, 1.2), p=q
            ),
            "motion_blur": lambda q: A.MotionBlur(blur_limit=(3, 5), p=q),
            "salt_pepper": lambda q: A.SaltAndPepper(amount=(0.005, 0.03), p=q),
            # fit_output: a warped or rotated line must keep all of its text, or the
            # label would no longer match the image
            "perspective": lambda q: A.Perspective(
                scale=(0.01, 0.04), fit_output=True, border_mode=cv2.BORDER_REPLICATE, p=q
            ),
            "brightness_contrast": lambda q: A.RandomBrightnessContrast(0.25, 0.3, p=q),
            "jpeg": lambda q: A.ImageCompression(quality_range=(30, 90), p=q),
            "rotate": lambda q: A.Affine(
                rotate=(-2, 2), fit_output=True, border_mode=cv2.BORDER_REPLICATE, p=q
            ),
        }
        self.pipeline = A.Compose([factories[k](p[k]) for k in TRANSFORMS if p[k] > 0])

    def __repr__(self) -> str:
        return f"Augmenter({self.probs})"

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return self.pipeline(image=image)["image"]
