"""raydo's errors. The tree is drawn in raydo.runtime.errors, where they are defined."""

from raydo.runtime.errors import *  # noqa: F403
from raydo.runtime.errors import __all__ as __all__
from raydo.runtime.errors import __doc__ as _tree

__doc__ = (__doc__ or "") + "\n\n" + (_tree or "")
