"""The tensor core: network, loss formulas, objective, optimiser, tiling, geometry and colour, on tensors.
May import only torch, numpy and the standard library: no pipeline layer, no YAML keys, no exit codes."""
