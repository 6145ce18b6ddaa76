"""The bottom layer: the stage cache, artifact files, config helpers, errors and the protocols
every other layer implements. Imports nothing else of afd."""
