"""The clients bulkops is compared with: balena's SDK, a per-device loop, a 16-worker aiohttp script."""
