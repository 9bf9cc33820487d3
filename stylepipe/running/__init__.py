"""Running a plan: the runner, the executors (local, ray), the worker's stages and the one memory model.
May import report, plan, config, targets, extend, io and core; never the CLI or the faces."""
