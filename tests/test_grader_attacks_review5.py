"""Adversarial review of the grader, fifth round (helper R11e, 2026-11-30).

The review found four kinds of successful attack on commit e1e753a. This file holds the one
fixed in the same session; the other three are described in the threat model
(``notebooks/assignments/README.md``, "Not defended") and in that session's note:

* **A3 Questions 3 and 4 with ``None`` as every answer** (here, was 4 / 4): the
  submission sets ``class_means = farthest_digit = centroid_accuracy = None`` and keeps
  untrained parameters. ``check_latent_statistics`` took None for "not asked" and checked
  nothing. Now its default is a sentinel (``grading.a3.NOT_ASKED``) and None is a wrong
  answer.
* a pasted reference held where the kernel-side reach listing does not look: a keyword-only
  default, a base class, a property, a dict key, an object array, a singledispatch
  registry, a weakref, a coroutine's frame, a module ``__getattr__`` (not fixed);
* the kernel blinding its own reach listing: a patched ``hashlib.sha256``, or IPython's
  cell file names made to look installed (not fixed: the listing runs in the kernel);
* one submission filling the grader's disk, so that submissions graded at the same time
  (``--jobs 2``) score 0 with a message blaming them (not fixed).
"""

from __future__ import annotations

import pytest
from test_grader_attacks import A3, by_id, grade_batch

A3_NONE = {
    "class_means": "class_means = None\nfarthest_digit = None\n",
    "centroid_accuracy": "centroid_accuracy = None\n",
}


@pytest.fixture(scope="module")
def review5(tmp_path_factory):
    untrained = [("training", "params = init_params(jax.random.key(1))  # untrained")]
    return grade_batch(tmp_path_factory.mktemp("review5"), {"a3_none": (A3, A3_NONE, untrained)})


def test_none_as_every_a3_statistic_scores_zero(review5):
    questions = by_id(review5["a3_none"])
    for grade_id, name in (
        ("test_class_means", "class_means"),
        ("test_centroid_accuracy", "centroid_accuracy"),
    ):
        assert questions[grade_id]["points"] == 0, questions[grade_id]
        assert f"{name} is None" in questions[grade_id]["message"]
