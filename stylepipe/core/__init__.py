"""The tensor core: network, losses, optimiser, colour and geometry, on tensors only.

Nothing here imports the pipeline, the cache, pydantic or PIL (an import contract in the test
suite keeps it so), so the core can be used inside any training loop or data pipeline.
"""
