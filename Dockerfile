# One image, several roles: the command chooses api, worker or beat (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

# OpenCV's headless wheel still needs libGL-free basics only; libgomp for LiteRT threads.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 curl \
 && rm -rf /var/lib/apt/lists/*

COPY pyproject.toml README.md alembic.ini ./
COPY bloodcount ./bloodcount
COPY api ./api
COPY worker ./worker
COPY training ./training
COPY migrations ./migrations
# The service runs the committed LiteRT model, so TensorFlow (the `train` extra) stays out.
RUN pip install -e .

RUN useradd --system --uid 10001 bloodcount
USER bloodcount
EXPOSE 8000
CMD ["bloodcount", "serve", "--host", "0.0.0.0", "--port", "8000"]
