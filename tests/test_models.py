import pytest
import torch

from distill.models import build_model

TEACHER = dict(backbone="resnet34", hidden=32, layers=1)
STUDENT = dict(backbone="shufflenet_v2", hidden=32, layers=1, backbone_args={"width": 0.5})


@pytest.mark.parametrize("width", [32, 100, 128, 320])
def test_teacher_and_student_emit_w_over_4_frames(width):
    x = torch.randn(2, 1, 32, width)
    t_logits, t_feat = build_model(11, **TEACHER).eval()(x)
    s_logits, s_feat = build_model(11, **STUDENT).eval()(x)
    assert t_logits.shape == (2, width // 4, 11)
    assert s_logits.shape == t_logits.shape
    assert t_feat.shape[-1] == s_feat.shape[-1] == width // 4
    assert t_feat.shape[1] == 512


def test_rgb_input_and_narrow_conv5():
    m = build_model(
        5,
        backbone="shufflenet_v2",
        in_channels=3,
        hidden=16,
        layers=1,
        backbone_args={"width": 0.5, "conv5_channels": 64},
    )
    logits, feat = m(torch.randn(1, 3, 32, 64))
    assert logits.shape == (1, 16, 5) and feat.shape[1] == 64


def test_unknown_backbone():
    with pytest.raises(ValueError, match="unknown backbone"):
        build_model(5, backbone="vgg")
