"""Settings split by concern; ``zyra.settings`` assembles them.

``DJANGO_SETTINGS_MODULE=zyra.settings`` is the default; the test suite uses
``zyra.settings.test``.
"""

import os as _os

if _os.environ.get("DJANGO_SETTINGS_MODULE") == "zyra.settings.test":
    # The test defaults must be in the environment before any settings module reads it.
    from zyra.settings import _testenv  # noqa: F401

from zyra.settings.base import *  # noqa: F401,F403
from zyra.settings.celery import *  # noqa: F401,F403
from zyra.settings.channels import *  # noqa: F401,F403
from zyra.settings.resilience import *  # noqa: F401,F403
from zyra.settings.security import *  # noqa: F401,F403
from zyra.settings.vault import *  # noqa: F401,F403
from zyra.settings.zyra import *  # noqa: F401,F403
