"""Target policies: what a sample's CTC target is when a teacher reads it too."""

from __future__ import annotations

from distill.kd.outputs import Outputs

CTC_TARGETS = ("label", "teacher", "auto")


def ctc_texts(labels, teacher: Outputs, policy: str, min_confidence: float = 0.0):
    """The CTC target of each sample, and how many come from the teacher.

    - ``label``: the ground truth (unlabeled samples get none);
    - ``teacher``: the teacher's reading, when it is confident enough (>= min_confidence)
      and writable in the student's characters; else none;
    - ``auto``: the ground truth, except that an unlabeled sample takes the teacher's
      reading (as above) and a label the teacher matches up to letter case takes the
      teacher's casing (datasets that store upper-case labels for mixed-case text).
    """
    texts, from_teacher = [], 0
    for label, said, conf in zip(labels, teacher.texts, teacher.confidences):
        sure = bool(said) and conf >= min_confidence
        if policy == "label":
            text = label
        elif policy == "teacher" or label is None:
            text = said if sure else None
        else:
            text = said if sure and said.casefold() == label.casefold() else label
        from_teacher += text is not None and text == said and text != label
        texts.append(text)
    return texts, from_teacher
