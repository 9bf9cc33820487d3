"""Configuration: the pydantic schema, YAML positions, collected errors, --set overrides and loading.
May import targets, extend, io and core; never planning or anything above it."""
