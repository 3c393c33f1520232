"""The clients bulkops is compared with: a per-device loop and a fixed-concurrency aiohttp script."""
