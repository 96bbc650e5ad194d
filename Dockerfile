# The camcount image: Ray, Serve and the package with its ONNX extra, the
# person detector's weights fetched at build time (clusters often have no
# route to the internet at run time). One image serves every role: the Ray
# head and workers of cluster/kuberay/, the RayJob that runs
# `camcount run`, and the cluster launcher's nodes.
#
#   docker build -t your-registry/camcount:0.1.0 .
#   docker build --build-arg PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu ...  # CPU-only torch
FROM python:3.11-slim-bookworm

# wget: KubeRay's health probes of the Ray head and workers call it.
RUN apt-get update \
    && apt-get install -y --no-install-recommends wget \
    && rm -rf /var/lib/apt/lists/*

ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CAMCOUNT_MODELS_DIR=/opt/camcount/models \
    RAY_free_objects_period_milliseconds=100

# Where torch comes from: PyPI's Linux wheels carry CUDA for the GPU
# workers; PyTorch's CPU-only index (pip reads this variable) makes an image
# for CPU nodes a few GB smaller.
ARG PIP_EXTRA_INDEX_URL

WORKDIR /opt/camcount/src
COPY pyproject.toml README.md LICENSE ./
COPY camcount ./camcount
COPY actors ./actors
COPY serve_app ./serve_app

# torch and torchvision pinned inside the ranges pyproject.toml admits, to
# the releases the test suite runs on (tests/test_cluster_files.py checks
# both, and resolves this line).
RUN python -m pip install --no-cache-dir "torch==2.14.1" "torchvision==0.29.1" ".[onnx]"

# The weights, converted once here (docs/detectors.md).
RUN camcount models fetch

# The camcount config is mounted here (cluster/kuberay/: the ConfigMap).
ENV CAMCOUNT_CONFIG=/etc/camcount/camcount.yaml
WORKDIR /opt/camcount
CMD ["camcount", "--help"]
