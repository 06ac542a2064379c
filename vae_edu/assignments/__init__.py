"""Graded assignments: release student versions, grade submissions.

The instructor notebooks in ``notebooks/assignments/`` use nbgrader's markup (solution and
hidden-test markers, ``metadata.nbgrader`` with schema version 3), so they also work
unchanged in nbgrader. This package is a small stand-alone replacement for the two
commands a course needs:

    python -m vae_edu.assignments release SOURCE_DIR OUT_DIR
    python -m vae_edu.assignments grade SUBMISSION.ipynb [--source PATH] [--json PATH]

The checks the hidden tests call live in :mod:`vae_edu.grading`.
"""

from vae_edu.assignments.grade import (
    DEFAULT_SOURCE_DIR,
    DEFAULT_TIMEOUT,
    GradeReport,
    GradingError,
    QuestionResult,
    find_source,
    grade_submission,
    merge_submission,
)
from vae_edu.assignments.release import (
    CODE_STUB,
    TEXT_STUB,
    MarkerError,
    release_directory,
    release_notebook,
    validate_source,
)

__all__ = [
    "CODE_STUB",
    "DEFAULT_SOURCE_DIR",
    "DEFAULT_TIMEOUT",
    "GradeReport",
    "GradingError",
    "MarkerError",
    "QuestionResult",
    "TEXT_STUB",
    "find_source",
    "grade_submission",
    "merge_submission",
    "release_directory",
    "release_notebook",
    "validate_source",
]
