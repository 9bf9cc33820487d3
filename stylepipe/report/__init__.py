"""Reporting: report.json, the HTML report page, its thumbnails and loss curves, and its templates.
May import plan, config, targets, extend, io and core; never running, the CLI or the faces."""
