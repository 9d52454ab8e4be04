# Edge Allocator image for KubeRay (k8s/rayservice-*.yaml run it on every Ray pod).
#
# CPU (k8s/rayservice-cpu.yaml):
#   docker build -t edge-allocator:0.1.0 .
# GPU (k8s/rayservice-gpu.yaml runs edge-allocator:0.1.0-gpu): the -gpu tag of the Ray
# image (CUDA), torch's CUDA wheel from the index matching that CUDA version, and the
# [gpu] extra, which swaps ONNX Runtime for onnxruntime-gpu:
#   docker build -t edge-allocator:0.1.0-gpu \
#     --build-arg BASE_IMAGE=rayproject/ray:2.60.0-py311-gpu \
#     --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 \
#     --build-arg EXTRAS=redis,postgres,gpu .
# The tag must match IMAGE_REPO/IMAGE_TAG in k8s/generate.py (the image Ray pods run).
ARG BASE_IMAGE=rayproject/ray:2.60.0-py311
FROM ${BASE_IMAGE}

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG EXTRAS=redis,postgres

ENV APP_HOME=/home/ray/app
# The package is installed into site-packages, so point its data paths at the app folder
# (edge_allocator/constants.py): shipped models, and a writable decision log and spool.
ENV EDGE_ALLOCATOR_MODELS_DIR=${APP_HOME}/models \
    EDGE_ALLOCATOR_DATABASE_URL=sqlite:///${APP_HOME}/var/edge_allocator.db \
    EDGE_ALLOCATOR_SPOOL=${APP_HOME}/var/spool/decisions.jsonl \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The Ray image runs as the unprivileged user `ray` (uid 1000, group users); the app
# folder belongs to it so pip can build there and the decision log can be written.
USER root
RUN mkdir -p ${APP_HOME}/var/spool && chown -R 1000:100 ${APP_HOME}
USER ray
WORKDIR ${APP_HOME}

# torch first, from the CPU (or CUDA) index: from PyPI an unpinned resolve pulls a
# multi-GB CUDA build. A layer of its own, so code changes do not reinstall it.
RUN pip install torch==2.13.0 --index-url ${TORCH_INDEX_URL}

COPY --chown=1000:100 pyproject.toml README.md ./
COPY --chown=1000:100 edge_allocator/ edge_allocator/
COPY --chown=1000:100 deployments/ deployments/
RUN pip install ".[${EXTRAS}]" \
    && case ",${EXTRAS}," in *,gpu,*) \
         pip uninstall -y onnxruntime onnxruntime-gpu \
         && pip install --no-deps "$(grep -o 'onnxruntime-gpu==[0-9.]*' pyproject.toml)" ;; \
       esac \
    && rm -rf build *.egg-info \
    && python -c "import deployments.app, edge_allocator, onnxruntime, torch, ray; print('ok', ray.__version__, torch.__version__)"

COPY --chown=1000:100 serve_config.yaml ./
COPY --chown=1000:100 models/ models/

# KubeRay supplies the command (ray start ...); serve_config.yaml is here for
# `serve run serve_config.yaml` and `serve deploy` by hand.
