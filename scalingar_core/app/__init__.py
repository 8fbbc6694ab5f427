"""Applications over the engine: the command line, the bench, prompt files and sharding, and the pictures
they write (trace plot, entropy map)."""
