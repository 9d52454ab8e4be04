"""(c) The naive baseline a user would write first: one process, FastAPI, eager PyTorch
per request, no batching, no cache. Same model, same features, same answers.

    python -m benchmarks.naive_server --port 8100
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import uvicorn
from fastapi import FastAPI

from edge_allocator.constants import MODELS_DIR
from edge_allocator.graph import build_graph
from edge_allocator.runtime.artifacts import load_artifact
from edge_allocator.runtime.torch_backend import load_module
from edge_allocator.schema import AllocateRequest, BatchAllocateRequest


def make_app(model: str = "hybrid") -> FastAPI:
    torch.set_num_threads(1)
    module = load_module(load_artifact(MODELS_DIR, model))
    app = FastAPI()

    def decide(req: AllocateRequest) -> dict:
        g = build_graph(req, req.task)
        with torch.no_grad():
            scores = module(torch.from_numpy(g.x)[None], torch.from_numpy(g.adj)[None],
                            torch.from_numpy(g.mask)[None])[0].numpy()
        best = int(np.argmax(np.where(g.mask, scores, -np.inf)))
        probs = np.exp(scores[g.mask] - scores[g.mask].max())
        return {"node_index": best, "node_id": req.node_ids()[best],
                "confidence": float(probs.max() / probs.sum())}

    @app.post("/v1/allocate")
    def allocate(req: AllocateRequest) -> dict:
        return decide(req)

    @app.post("/v1/allocate/batch")
    def allocate_batch(req: BatchAllocateRequest) -> dict:
        return {"decisions": [decide(s) for s in req.states]}

    return app


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, default=8100)
    p.add_argument("--model", default="hybrid")
    args = p.parse_args()
    uvicorn.run(make_app(args.model), host="127.0.0.1", port=args.port, log_level="warning",
                access_log=False)


if __name__ == "__main__":
    main()
