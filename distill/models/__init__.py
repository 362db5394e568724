from distill.models.crnn import CRNN, build_model, freeze_modules

__all__ = ["CRNN", "build_model", "freeze_modules"]
