# spi-bot in a container (docs/DEPLOY.md). The database lives on the /data volume.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin spi-bot

WORKDIR /app
# Dependencies first, exactly as locked (hash-checked), so code changes reuse this layer.
COPY requirements.lock ./
RUN pip install --require-hashes -r requirements.lock
COPY pyproject.toml README.md LICENSE ./
COPY core ./core
COPY bot ./bot
COPY locales ./locales
COPY surveys ./surveys
# Editable, so the questionnaire, units and catalogs are read from /app.
RUN pip install --no-deps -e .

RUN mkdir /data && chown spi-bot:spi-bot /data && chmod 0700 /data
ENV DATABASE_PATH=/data/spi.sqlite3 \
    MPLCONFIGDIR=/tmp/matplotlib
VOLUME ["/data"]
USER spi-bot
WORKDIR /data
CMD ["spi-bot", "run"]
