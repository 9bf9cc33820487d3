"""Extension points: the registries, the built-in loss terms and style sources, plugin loading.
May import io and core only."""
