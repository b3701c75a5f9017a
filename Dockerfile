# Packhouse container: a drop-in for the pypiserver image.
#
#   docker build -t packhouse .
#   docker run -p 8081:8080 -v packages:/data/packages packhouse -P . -a . /data/packages
#
# The entrypoint is `packhouse run`, so a pypiserver compose `command:` line works unchanged.
# Behind a private mirror, or with no internet access at build time, give the index to install from:
#   docker build --build-arg PIP_INDEX_URL=https://mirror.example/simple/ -t packhouse .
#
# Volume permissions (pypiserver issue #256): the server runs as uid/gid 9898, never root.
# - Named volumes (the default compose setup) just work: Docker copies the ownership of the image's
#   /data/packages (9898) into a new, empty volume.
# - A bind-mounted host folder must be writable by 9898: `sudo chown -R 9898:9898 ./packages`, or run
#   the container as the folder's owner instead (compose `user: "1000:1000"`, docker `--user 1000:1000`).
#   Packhouse checks this at start and says which of the two to do, instead of failing on the first upload.
# - Or build the image with your own ids: --build-arg UID=1000 --build-arg GID=1000.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ARG PIP_INDEX_URL=https://pypi.org/simple/
ENV PIP_INDEX_URL=${PIP_INDEX_URL} \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
# Exact versions, every file's hash checked (requirements/*.txt, written by `make lock`): the same
# image from the same commit, and nothing the lock does not name. Dependencies first (their layer is
# kept while only the code changes); then Packhouse's own wheel, built with the locked hatchling in
# a throwaway venv, installed without dependencies, and `pip check` to prove none is missing.
COPY requirements/image.txt requirements/build.txt ./requirements/
RUN python3 -m venv /opt/packhouse \
    && /opt/packhouse/bin/pip install --no-cache-dir --require-hashes --no-deps -r requirements/image.txt \
    && python3 -m venv /opt/build \
    && /opt/build/bin/pip install --no-cache-dir --require-hashes --no-deps -r requirements/build.txt
COPY pyproject.toml README.md alembic.ini ./
COPY migrations ./migrations
COPY app ./app
# hadolint ignore=DL3013
RUN /opt/build/bin/pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /tmp/dist . \
    && /opt/packhouse/bin/pip install --no-cache-dir --no-deps /tmp/dist/packhouse-*.whl \
    && /opt/packhouse/bin/pip check \
    && /opt/packhouse/bin/packhouse --version

FROM ${PYTHON_IMAGE}
ARG UID=9898
ARG GID=9898
LABEL org.opencontainers.image.title="Packhouse" \
      org.opencontainers.image.description="A private Python package index; drop-in for pypiserver"
RUN groupadd --system --gid "${GID}" packhouse \
    && useradd --system --uid "${UID}" --gid "${GID}" --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin packhouse \
    && mkdir -p /data/packages /data/auth \
    && chown -R "${UID}:${GID}" /data
COPY --from=build /opt/packhouse /opt/packhouse
ENV PATH=/opt/packhouse/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER ${UID}:${GID}
WORKDIR /data
VOLUME /data
EXPOSE 8080
# Liveness on the default port and path (change both here if you pass -p or --health-endpoint);
# over HTTPS when PACKHOUSE_SSL_CERTFILE is set (the certificate names the public host, not 127.0.0.1:
# this probe of the loopback does not verify it).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import os, ssl, urllib.request as u; tls = bool(os.environ.get('PACKHOUSE_SSL_CERTFILE')); u.urlopen(('https' if tls else 'http') + '://127.0.0.1:8080/health', timeout=4, context=ssl._create_unverified_context() if tls else None)"]
ENTRYPOINT ["packhouse", "run"]
CMD ["-p", "8080", "/data/packages"]
