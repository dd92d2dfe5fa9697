"""JSON Schemas of rotator's documents (shipped with the package)."""
