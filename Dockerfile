# The uniform image: the inference runtime and every mesh service
# (scripts/container-entrypoint.sh picks one: inference, registry, scheduler, monitor, train).
#
#   docker build -t mlaas .           # with build/wheels made by `make docker-image` (below)
#
# BASE_IMAGE needs Python 3.11 with venv and useradd: the official python:3.11-slim, or Debian
# bookworm with python3-venv (what `make test-docker` builds here from a debootstrap, since no
# image can be pulled). The project and its dependencies come as wheels from build/wheels, made
# on the host by scripts/docker_image.py (`make docker-image`), so the build needs no network.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
COPY build/wheels /wheels
RUN python3 -m venv /opt/mlaas \
    && /opt/mlaas/bin/pip install --no-cache-dir --no-index --find-links=/wheels mlaas-mesh

FROM ${BASE_IMAGE}
RUN groupadd --system --gid 10001 mlaas \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/mlaas --create-home mlaas
COPY --from=build /opt/mlaas /opt/mlaas
COPY scripts/container-entrypoint.sh /usr/local/bin/mlaas-entrypoint
ENV PATH=/opt/mlaas/bin:$PATH \
    MLAAS_DATA_DIR=/var/lib/mlaas \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /var/lib/mlaas
ENTRYPOINT ["mlaas-entrypoint"]
CMD ["inference"]
