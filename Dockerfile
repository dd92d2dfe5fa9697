# Build: make image   (the production image gen3wf-rotator:<chart appVersion>; the wheels are built on
# the host first: dist/wheels, pinned by constraints.txt). Push: make push REGISTRY=<registry>.
# Offline machines: BASE_IMAGE=rotator-base:bookworm from scripts/build-base-image.sh.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
# "demo" adds the embedded AWS emulator for `rotator demo`; leave empty for production.
ARG EXTRAS=""
COPY dist/wheels /wheels
COPY constraints.txt /constraints.txt
RUN python3 -m venv /opt/rotator \
    && /opt/rotator/bin/pip install --no-cache-dir --no-index --find-links /wheels -c /constraints.txt \
       "gen3wf-rotator${EXTRAS:+[$EXTRAS]}" \
    && /opt/rotator/bin/pip uninstall --yes pip \
    && find /opt/rotator -name '__pycache__' -prune -exec rm -rf {} +

FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="gen3wf-rotator" \
      org.opencontainers.image.description="Key rotation and cleanup worker for Gen3Workflow on AWS"
COPY --from=build /opt/rotator /opt/rotator
ENV PATH=/opt/rotator/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# Numeric, so that runAsNonRoot can verify it; no home, nothing written at runtime.
USER 10001:10001
EXPOSE 9102
ENTRYPOINT ["rotator"]
CMD ["serve"]
