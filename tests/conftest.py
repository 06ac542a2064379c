"""Shared pytest configuration.

* Matplotlib renders off-screen (Agg) in the test process so unit tests never need a
  display. This is set with ``matplotlib.use`` and NOT through the ``MPLBACKEND``
  environment variable: nbval's kernels inherit the environment, and with
  ``MPLBACKEND=Agg`` a notebook's ``plt.show()`` would produce no output at all.
* ``browser`` tests need Debian's chromium; on a student's machine without it they are
  skipped with instructions, but where ``VAE_EDU_REQUIRE_BROWSER=1`` (set by ``.ci/run``)
  a missing browser is a failure, so CI can never pass by skipping them.
"""

import matplotlib

matplotlib.use("Agg")
