"""Kubernetes deployment of Edge Allocator: KubeRay RayService manifests generated from
serve_config.yaml (``python -m k8s.generate``), monitoring manifests, and the offline
checks that keep them valid."""
