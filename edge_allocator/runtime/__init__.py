"""Serving runtime: artifacts (manifests, checksums), export and inference backends."""
