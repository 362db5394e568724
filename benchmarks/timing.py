"""Timing several engines on a shared, noisy machine: they take turns."""

from __future__ import annotations

import time


def take_turns(fns: list, rounds: list[list]) -> list[list[list[float]]]:
    """Seconds of each ``fn(image)``: ``times[engine][round][line]``. In round r every
    engine reads ``rounds[r]`` in turn, after a pause (the last engine's spinning threads
    park) and one untimed call, so a machine whose speed drifts over the run slows all
    engines alike instead of whichever ran while it was slow."""
    for fn in fns:
        fn(rounds[0][0])  # warm-up
    times = [[] for _ in fns]
    for images in rounds:
        for fn, t in zip(fns, times):
            time.sleep(0.05)
            fn(images[0])
            turn = []
            for img in images:
                start = time.perf_counter()
                fn(img)
                turn.append(time.perf_counter() - start)
            t.append(turn)
    return times
