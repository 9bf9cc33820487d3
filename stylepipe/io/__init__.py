"""Files in and out: decoding and encoding pictures, the network's weights, one sha256 helper and
one atomic writer. May import the tensor core only, never the pipeline."""
