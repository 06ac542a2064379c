"""The functions behind the notebooks' interactive demos.

Every slider callback is a plain function here, so it can be unit-tested by setting the
slider value and checking what is drawn or returned; the notebooks only wire them to
ipywidgets. One submodule per notebook topic, re-exported here.
"""

from .bayes import *  # noqa: F401,F403
from .elbo import *  # noqa: F401,F403
from .evaluation import *  # noqa: F401,F403
from .kl import *  # noqa: F401,F403
from .latent import *  # noqa: F401,F403
from .loss import *  # noqa: F401,F403
from .training import *  # noqa: F401,F403
