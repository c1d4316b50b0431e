# The service image: every NanoClaw Bus service in one image; the command picks one
# (`nanoclaw service gateway|router|queue|runner|scheduler|broker|governance|projections`).
# Legacy-builder compatible on purpose: no syntax directive, no RUN mounts (stack notes §4.3).
# Build context (assembled by deploy/images/service.py): Dockerfile, wheels/ (host wheelhouse + requirements.txt),
# src/ (the project's packages, nats.conf, pyproject.toml), bin/ (helper scripts).
ARG BASE_IMAGE=python:3.11-slim-bookworm

# Stage 1: the venv, installed offline from the wheelhouse, once for all services. A separate stage so the
# wheels never end up in the final image's layers.
FROM ${BASE_IMAGE} AS venv
COPY wheels/ /tmp/wheels/
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --no-index --find-links /tmp/wheels \
        -r /tmp/wheels/requirements.txt \
 && rm -rf /tmp/wheels

# Stage 2: the docker CLI alone (the runner starts sandboxes with `docker run -i`, through the socket proxy),
# taken out of Debian's docker.io package: the package itself would bring the engine, containerd and runc.
FROM ${BASE_IMAGE} AS dockercli
RUN apt-get update \
 && cd /tmp && apt-get download docker.io \
 && dpkg-deb -x docker.io_*.deb /tmp/pkg \
 && install -m 0755 /tmp/pkg/usr/bin/docker /usr/local/bin/docker \
 && rm -rf /tmp/pkg /tmp/*.deb /var/lib/apt/lists/*

FROM ${BASE_IMAGE}
# tini (PID 1) and libmagic (python-magic, imported by neonize for the WhatsApp channel) from Debian when the
# base lacks them; Debian's repositories are plain http and need no CA (stack notes §4.4).
RUN if command -v tini >/dev/null && ls /usr/lib/*/libmagic.so.1 >/dev/null 2>&1; then echo "tini and libmagic present"; \
    else apt-get update && apt-get install -y --no-install-recommends tini libmagic1 \
         && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb; fi \
 && test -x /usr/bin/tini
# uid 1000 owns only the data directory; the code and the venv stay root-owned (read-only for the service).
RUN groupadd -g 1000 nanoclaw \
 && useradd -u 1000 -g 1000 -m -d /home/nanoclaw -s /bin/sh nanoclaw \
 && mkdir -p /data \
 && chown 1000:1000 /data
COPY --from=venv /opt/venv /opt/venv
COPY --from=dockercli /usr/local/bin/docker /usr/bin/docker
COPY src/ /opt/nanoclaw/
COPY bin/ /usr/local/bin/
RUN /opt/venv/bin/python -m compileall -q /opt/nanoclaw \
 && chmod 0755 /usr/local/bin/nanoclaw
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONPATH=/opt/nanoclaw \
    PYTHONUNBUFFERED=1 \
    NANOCLAW_DATA_DIR=/data \
    NANOCLAW_HARNESS__STATUS_HOST=0.0.0.0 \
    NANOCLAW_HARNESS__STATUS_PORT=8090
WORKDIR /data
USER 1000:1000
EXPOSE 8090
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/nanoclaw"]
CMD ["--help"]
