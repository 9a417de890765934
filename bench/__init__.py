"""lrbench: which learning-rate schedule, with which settings, works best for my model and data?"""

from __future__ import annotations

__version__ = "0.1.0"
