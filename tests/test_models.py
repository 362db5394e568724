import pytest
import torch

from distill.models import build_model

from .helpers import with_random_statistics

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


@pytest.mark.parametrize("net", [TEACHER, {**STUDENT, "layers": 2}], ids=["teacher", "student"])
def test_a_line_reads_the_same_alone_and_beside_a_wider_one(net):
    """Padding must not reach the valid frames: not through the convolutions' receptive
    fields, not through the backward LSTM."""
    torch.manual_seed(0)
    model = with_random_statistics(build_model(11, **net))
    line = torch.randn(1, 1, 32, 102)  # not a multiple of 4 on purpose
    wide = torch.randn(1, 1, 32, 306)  # three times wider
    batch = torch.zeros(2, 1, 32, 308)
    batch[0, :, :, :102], batch[1, :, :, :306] = line[0], wide[0]
    frames = 26  # ceil(102 / 4)
    with torch.no_grad():
        alone, _ = model(line, torch.tensor([102]))
        beside, _ = model(batch, torch.tensor([102, 306]))
        unmasked, _ = model(batch)  # without valid widths, padding leaks (the old behaviour)
    assert alone.shape[1] == frames and beside.shape[1] == 77
    assert (alone[0] - beside[0, :frames]).abs().max() < 1e-4
    assert (alone[0] - unmasked[0, :frames]).abs().max() > 1e-3  # the check can fail
    # a line alone needs no widths: every column is valid
    with torch.no_grad():
        assert torch.equal(model(line)[0], alone)


def test_frame_count_mismatch_raises_instead_of_clamping():
    from distill.core.preprocess import check_frames, valid_frames

    assert valid_frames(102) == 26 and valid_frames(102, 8) == 13
    check_frames(26, 104, 4)
    with pytest.raises(ValueError, match="emitted 13 frames .* means 26"):
        check_frames(13, 104, 4, "teacher")
    model = build_model(11, **STUDENT).eval()
    with pytest.raises(ValueError, match="do not fit"):
        model(torch.randn(1, 1, 32, 64), torch.tensor([100]))


def test_shuffle_units_compute_torchvisions_function():
    """The units shuffle by stack-and-view (one ONNX Concat): the very function of
    torchvision's concatenate-then-shuffle, for both unit kinds."""
    from torchvision.models.shufflenetv2 import InvertedResidual, channel_shuffle

    from distill.models.backbones import ChannelShuffle, ShuffleNetV2Backbone

    torch.manual_seed(0)
    a, b = torch.randn(2, 6, 4, 9), torch.randn(2, 6, 4, 9)
    want = channel_shuffle(torch.cat((a, b), dim=1), 2)
    assert torch.equal(ChannelShuffle(2)(a, b), want)
    assert torch.equal(ChannelShuffle(2)(torch.cat((a, b), dim=1)), want)
    with pytest.raises(ValueError, match="2 groups got 3"):
        ChannelShuffle(2)(a, b, a)
    net = ShuffleNetV2Backbone(width=0.5).eval()
    x = torch.randn(2, 1, 32, 40)
    units = [u for u in net.modules() if isinstance(u, InvertedResidual)]
    assert {u.stride for u in units} == {1, 2}  # both kinds of unit
    with torch.no_grad():
        feats = net.body[1](net.body[0](x))
        for unit in units:
            reference = InvertedResidual.forward(unit, feats)  # torchvision's own forward
            feats = unit(feats)
            assert torch.equal(feats, reference)
