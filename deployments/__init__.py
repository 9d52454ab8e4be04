"""The Ray Serve application: one deployment per file, composed in ``app.py``.

No model maths here: each deployment wraps a stage from ``edge_allocator.service``.
"""
