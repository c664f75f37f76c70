"""trtkit's loggers: ``logging.getLogger("trtkit")`` and its children.

trtkit never prints and installs no handler except a :class:`logging.NullHandler`; applications (and the
CLI) decide where messages go. TensorRT's own log arrives on ``trtkit.tensorrt``.
"""

from __future__ import annotations

import logging

ROOT = "trtkit"

logging.getLogger(ROOT).addHandler(logging.NullHandler())


def get_logger(child: str) -> logging.Logger:
    """Return the ``trtkit.<child>`` logger."""
    return logging.getLogger(f"{ROOT}.{child}")
