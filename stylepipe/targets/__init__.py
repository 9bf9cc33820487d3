"""Style targets: their cache keys, the two-layer store and the disk cache (diskcache).
May import extend, io and core; never configuration or anything above it."""
