"""Planning: jobs from a validated config (inputs, terms and sweeps, output names, resume fingerprints).
May import config, targets, extend, io and core; never reporting, running, the CLI or the faces."""
