"""Files in and out: decoding and encoding pictures, the network's weights, one sha256 helper and
one atomic writer. It may use the tensor core, never the pipeline."""
