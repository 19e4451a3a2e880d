"""The training application built on the fastgan library: the command line (cli), the trainer
(train), datasets (data), checkpoints, image grids, sampling and the distributed launch.

The library (fastgan.nn, fastgan.functional, fastgan.fuse, fastgan.models and the ops) never
imports this package; the application imports the library like any user script would."""
