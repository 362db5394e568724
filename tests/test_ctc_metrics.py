import numpy as np
import pytest

from distill.core.ctc import greedy_decode, greedy_decode_logits, softmax
from distill.core.metrics import normalize, score, split_protocol


def one_hot_probs(path, c=4, p=0.9):
    probs = np.full((len(path), c), (1 - p) / (c - 1))
    probs[np.arange(len(path)), path] = p
    return probs


def test_greedy_collapses_repeats_and_blanks():
    probs = one_hot_probs([1, 1, 0, 1, 2, 2, 0, 0])[None]
    ((idx, conf),) = greedy_decode(probs)
    assert idx == [1, 1, 2]
    assert conf == pytest.approx(0.9)


def test_greedy_respects_valid_length():
    probs = np.stack([one_hot_probs([1, 0, 2, 3]), one_hot_probs([3, 0, 0, 0])])
    out = greedy_decode(probs, np.array([2, 4]))
    assert [o[0] for o in out] == [[1], [3]]


def test_empty_prediction_confidence_is_blank_mean():
    ((idx, conf),) = greedy_decode(one_hot_probs([0, 0], p=0.8)[None])
    assert idx == [] and conf == pytest.approx(0.8)


def test_softmax_rows_sum_to_one():
    x = np.random.default_rng(0).normal(size=(2, 3, 5))
    assert np.allclose(softmax(x).sum(-1), 1)


@pytest.mark.parametrize("classes", [5, 6892])
def test_decoding_from_logits_equals_decoding_the_softmax(classes):
    """The predictor decodes logits directly (probabilities only where the confidence
    reads them): same characters and confidences as the full softmax, incl. a line that
    emits nothing and one of zero valid frames."""
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (4, 30, classes)).astype(np.float32)
    logits[1, :, 0] += 50  # all blank: the confidence is the mean best-frame probability
    lengths = np.array([30, 30, 7, 0])
    want = greedy_decode(softmax(logits), lengths)
    got = greedy_decode_logits(logits, lengths)
    assert [ids for ids, _ in got] == [ids for ids, _ in want]
    assert got[1][0] == [] and got[3] == ([], 0.0)
    assert np.allclose([c for _, c in got], [c for _, c in want], atol=1e-6)


def test_metrics_hand_computed():
    preds = ["hello", "wor1d", "a b", ""]
    labels = ["hello", "world", "ab", "xy"]
    m = score(preds, labels)
    assert m["n"] == 4
    assert m["acc"] == pytest.approx(1 / 4)
    assert m["acc_nospace"] == pytest.approx(2 / 4)  # "a b" == "ab" without spaces
    # edits: 0 + 1 + 1 + 2 = 4 over 5 + 5 + 2 + 2 = 14 label characters
    assert m["cer"] == pytest.approx(4 / 14)
    # NED terms: 0, 1/5, 1/3, 2/2
    assert m["ned"] == pytest.approx(1 - (0 + 1 / 5 + 1 / 3 + 1) / 4)


def test_normalization_nfkc_and_whitespace():
    assert normalize("  Ａ\tB  ") == "A B"  # full-width A -> A, whitespace collapsed
    assert score(["ＡＢ"], ["AB"])["acc"] == 1.0


def test_scene_protocol():
    assert normalize("Hello, World!", "scene") == "helloworld"
    assert score(["hello"], ["HELLO."], "scene")["acc"] == 1.0
    with pytest.raises(ValueError, match="protocol"):
        score(["a"], ["a"], "fuzzy")


def test_split_protocol():
    assert split_protocol("a/labels.tsv:caseless") == ("a/labels.tsv", "caseless")
    assert split_protocol("a/labels.tsv") == ("a/labels.tsv", "exact")
    assert split_protocol("c:/x.tsv", default="scene") == ("c:/x.tsv", "scene")  # not a protocol
    with pytest.raises(ValueError, match="a/labels.tsv.*LABELFILE:PROTOCOL"):
        split_protocol("a/labels.tsv", default=None)
