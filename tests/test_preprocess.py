import cv2
import numpy as np
import pytest

from distill.core.preprocess import (
    ImageError,
    PreprocessConfig,
    load_image,
    pad_batch,
    preprocess,
    valid_frames,
)


def test_formats_load_as_rgb(tmp_path):
    gray = np.tile(np.arange(0, 200, 2, dtype=np.uint8), (20, 1))
    cv2.imwrite(str(tmp_path / "gray.png"), gray)
    cv2.imwrite(str(tmp_path / "g16.png"), gray.astype(np.uint16) * 256)
    rgba = np.zeros((20, 100, 4), np.uint8)
    rgba[..., 3] = 0  # fully transparent: composited on white
    cv2.imwrite(str(tmp_path / "rgba.png"), rgba)
    from PIL import Image

    Image.fromarray(gray).convert("P").save(tmp_path / "pal.png")
    for name in ("gray", "g16", "pal"):
        img = load_image(tmp_path / f"{name}.png")
        assert img.shape == (20, 100, 3) and img.dtype == np.uint8
        assert abs(int(img[0, 50, 0]) - 100) <= 2, name
    assert (load_image(tmp_path / "rgba.png") == 255).all()


@pytest.mark.parametrize(
    "content, match",
    [(None, "No such file"), (b"", "empty file"), (b"not an image at all", "not a decodable")],
)
def test_bad_files_name_the_path(tmp_path, content, match):
    p = tmp_path / "bad.png"
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(ImageError, match=match) as e:
        load_image(p)
    assert str(p) in str(e.value)


def test_resize_keeps_aspect_and_clamps():
    cfg = PreprocessConfig(height=32, channels=1, max_width=200, min_width=8)
    assert preprocess(np.zeros((64, 100, 3), np.uint8), cfg).shape == (1, 32, 50)
    assert preprocess(np.zeros((16, 1000, 3), np.uint8), cfg).shape == (1, 32, 200)  # very wide
    assert preprocess(np.zeros((300, 3, 3), np.uint8), cfg).shape == (1, 32, 8)  # very narrow
    rgb = preprocess(np.zeros((32, 40), np.uint8), PreprocessConfig(channels=3))
    assert rgb.shape == (3, 32, 40)


def test_stretch_widens_the_line_within_the_limits():
    """A network cut to a lower height reads its lines widened (preprocess.stretch) to keep
    its frames per character; the width limits still hold."""
    cfg = PreprocessConfig(height=32, channels=1, max_width=200, stretch=1.5)
    assert preprocess(np.zeros((64, 100, 3), np.uint8), cfg).shape == (1, 32, 75)
    assert preprocess(np.zeros((16, 1000, 3), np.uint8), cfg).shape == (1, 32, 200)
    assert PreprocessConfig.from_dict({"height": 32}).stretch == 1.0  # older checkpoints


def test_normalization_range():
    cfg = PreprocessConfig()
    x = preprocess(np.array([[0, 255]] * 32, np.uint8), cfg)
    assert x.min() == pytest.approx(-1) and x.max() == pytest.approx(1)


def test_config_validation():
    with pytest.raises(ValueError, match="channels"):
        PreprocessConfig(channels=2)
    with pytest.raises(ValueError, match="multiple of 4"):
        PreprocessConfig(max_width=801)
    with pytest.raises(ValueError, match="stretch"):
        PreprocessConfig(stretch=0)


def test_pad_batch_and_frames():
    a = np.ones((1, 32, 10), np.float32)
    b = np.ones((1, 32, 21), np.float32)
    batch, widths = pad_batch([a, b])
    assert batch.shape == (2, 1, 32, 24)
    assert widths.tolist() == [10, 21]
    assert (batch[0, :, :, 10:] == 0).all() and (batch[1, :, :, :21] == 1).all()
    assert valid_frames(widths).tolist() == [3, 6]
