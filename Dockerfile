FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY indexer indexer
COPY search_api search_api
COPY workers workers
COPY clipsearch clipsearch
RUN pip install --no-cache-dir .
ENV PYTHONUNBUFFERED=1
EXPOSE 8000
CMD ["clipsearch", "serve", "--host", "0.0.0.0", "--port", "8000"]
