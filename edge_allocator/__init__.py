"""Edge Allocator: learned task placement for IoT / edge / cloud networks.

The core library: request schema, graph building, simulator, policies, training and
inference runtimes. Nothing here imports Ray Serve; ``deployments/`` wraps it.
"""

__version__ = "0.1.0"
