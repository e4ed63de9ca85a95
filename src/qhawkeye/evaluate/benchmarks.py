"""Moved to :mod:`qhawkeye.labels` (a foundation module: the data pipeline and evaluation both read labels
through it, and neither imports the other for it). This name stays an alias of that module for code written
against it."""

import sys

from qhawkeye import labels

sys.modules[__name__] = labels
