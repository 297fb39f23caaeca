"""Video decoding: probing metadata and reading frames."""
