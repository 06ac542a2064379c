"""nbgrader configuration for the vae_edu assignments (copy it to your course directory).

The course directory then looks like this (nbgrader's standard layout)::

    course/
      nbgrader_config.py           this file
      source/A1/A1_kl_divergence.ipynb
      source/A2/A2_elbo_reparameterization.ipynb
      source/A3/A3_train_and_explore.ipynb

Commands, run in the course directory: ``nbgrader generate_assignment A1`` (the student
version, in release/A1), ``nbgrader release_assignment A1`` (to the exchange; students
then ``nbgrader fetch_assignment`` and ``nbgrader submit``, or use JupyterLab's
Assignments tab), ``nbgrader collect A1``, ``nbgrader autograde A1``, then the formgrader
for the written answers and ``nbgrader generate_feedback A1``.

Tested with nbgrader 0.9.6 (tests/test_nbgrader.py). nbgrader runs the hidden tests in the
student's own kernel: see "Using nbgrader instead" in README.md for what that means.
"""

import os

c = get_config()  # noqa: F821 - provided by nbgrader when it loads this file

# One id per course: the exchange keeps courses apart by it.
c.CourseDirectory.course_id = os.environ.get("NBGRADER_COURSE_ID", "vae_edu")
# The course directory is the folder of this file (nbgrader's default is the working one).
c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
# Where release_assignment puts assignments and students' submit puts submissions: a folder
# every student's server can read and write (on JupyterHub, a shared volume). The exchange
# is not used on Windows; hand out release/ and collect submissions through your LMS there.
c.Exchange.root = os.environ.get("NBGRADER_EXCHANGE", "/srv/nbgrader/exchange")
# Per-cell time limit when nbgrader executes notebooks (autograde, validate). nbgrader's
# default of 30 s fails A1's plot cell and A3's training cell on a loaded machine.
c.ExecutePreprocessor.timeout = 600
# The stub that replaces a solution (the same as vae_edu's release writes).
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# nbgrader's feedback shows the autograded notebook *with* the hidden tests (its default
# GenerateFeedback pipeline does not remove them), and the traceback of a failed hidden
# test quotes its lines; nbgrader 0.9.6 has no switch for either. ClearHiddenTests removes
# them from the cells; ClearTestTracebacks (below) cuts the error of a test cell to its last
# line, "AssertionError: <the check's message>", before the HTML is written.
from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor  # noqa: E402
from nbgrader.preprocessors import (  # noqa: E402
    ClearHiddenTests,
    GetGrades,
    NbGraderPreprocessor,
)


class ClearTestTracebacks(NbGraderPreprocessor):  # enabled by default, unlike nbconvert's
    """In test cells (nbgrader ``grade`` and not ``solution``), an error output keeps only
    ``ename: evalue``: the traceback, which quotes the failed (hidden) test's source, goes."""

    def preprocess_cell(self, cell, resources, index):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("grade") and not meta.get("solution"):
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    output["traceback"] = [f"{output.get('ename')}: {output.get('evalue')}"]
        return cell, resources


c.GenerateFeedback.preprocessors = [
    GetGrades,
    ClearHiddenTests,
    ClearTestTracebacks,
    CSSHTMLHeaderPreprocessor,
]
