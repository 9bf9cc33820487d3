"""stylepipe: batch neural style transfer (Gatys, Ecker & Bethge 2015) as a YAML pipeline."""

__version__ = "1.1.0"
