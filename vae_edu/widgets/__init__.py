"""The interactive explorers of notebooks 06, 07 and 08: widgets built and wired, nothing else.

Each builder returns a NamedTuple of its widgets, so a test can set a slider's value and
read what is drawn; the math and the pictures come from :mod:`vae_edu.models`,
:mod:`vae_edu.latent`, :mod:`vae_edu.evaluate` and :mod:`vae_edu.plots`. One submodule per
notebook (training: 06, latent: 07, evaluation: 08), re-exported here.

The lessons of notebooks 01-05 need no widget code here: their sliders call figure
functions of :mod:`vae_edu.plots` (whose math is in :mod:`vae_edu.conjugate`,
:mod:`vae_edu.kl` and :mod:`vae_edu.loss`) and put the picture into an ``ipywidgets.Image``
with :func:`vae_edu.plots.figure_to_png`.
"""

from .evaluation import *  # noqa: F401,F403
from .latent import *  # noqa: F401,F403
from .training import *  # noqa: F401,F403
