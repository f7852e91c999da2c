# kefu in a container: one node on SQLite by default, or a cluster node with
# KEFU_DATABASE_URL=postgresql://... and KEFU_BROKER_URL=redis://... (deploy/compose.yaml).
#
#   docker build -t kefu .
#   docker run -p 8080:8080 -v kefu-data:/var/lib/kefu kefu
#   docker run --rm -v kefu-data:/var/lib/kefu kefu users create alice --role waiter --password ...
#
# docs/operations.md covers backups, upgrades and the other deployment files.

ARG PYTHON_VERSION=3.11

# ---- build: the wheel, from the sources alone (.dockerignore keeps the rest out)
FROM python:${PYTHON_VERSION}-slim AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
RUN python -m pip wheel --no-cache-dir --disable-pip-version-check --no-deps -w /dist .

# ---- run: the wheel installed by the same script a host install uses
FROM python:${PYTHON_VERSION}-slim
COPY deploy/install.sh /usr/local/bin/kefu-install
COPY --from=build /dist /tmp/dist
RUN PIP_NO_CACHE_DIR=1 sh /usr/local/bin/kefu-install /tmp/dist/kefu-*.whl /opt/kefu \
    && rm -rf /tmp/dist \
    && groupadd --system --gid 10001 kefu \
    && useradd --system --uid 10001 --gid kefu --home-dir /var/lib/kefu \
        --shell /usr/sbin/nologin kefu \
    && mkdir -p /var/lib/kefu \
    && chown kefu:kefu /var/lib/kefu \
    && chmod 0700 /var/lib/kefu

# The database and the signing key generated beside it (kefu.db.secret) live in
# the volume; on PostgreSQL a generated key is kefu.secret in the working directory,
# which is the volume too. Set KEFU_SECRET to keep the key out of the volume.
ENV PATH=/opt/kefu/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    KEFU_HOST=0.0.0.0 \
    KEFU_PORT=8080 \
    KEFU_DATABASE_URL=sqlite:////var/lib/kefu/kefu.db
WORKDIR /var/lib/kefu
VOLUME ["/var/lib/kefu"]
USER 10001:10001
EXPOSE 8080

# The slim image has no curl: the venv's Python asks /healthz (non-2xx or no answer: unhealthy).
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('KEFU_PORT', '8080'), timeout=4)"]

# SIGTERM: kefu closes its sockets with 1012 (service restart), and clients resume elsewhere.
STOPSIGNAL SIGTERM
ENTRYPOINT ["kefu"]
CMD ["serve"]
