"""Q-Hawkeye training: config, the pure UADO/PAO math, the GRPOTrainer subclass and the `train` entry point.

Importing this package does not import TRL; :mod:`qhawkeye.train.trainer` and :mod:`.config` do.
"""
