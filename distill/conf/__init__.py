"""Hydra configs (a package, so an installed wheel carries them)."""
