"""The functions behind the notebooks' interactive demos.

Every slider callback is a plain function here, so it can be unit-tested by setting the
slider value and checking what is drawn or returned; the notebooks only wire them to
ipywidgets. One submodule per notebook topic, re-exported here.

The lessons of notebooks 01-04 need no widget code here: their sliders call figure
functions of :mod:`vae_edu.plots` (whose math is in :mod:`vae_edu.conjugate`,
:mod:`vae_edu.kl` and :mod:`vae_edu.loss`) and put the picture into an ``ipywidgets.Image``
with :func:`vae_edu.plots.figure_to_png`.
"""

from .evaluation import *  # noqa: F401,F403
from .latent import *  # noqa: F401,F403
from .training import *  # noqa: F401,F403
