"""The network layer, and the only package that imports aiohttp: the client, the adaptive limiter,
URL and answer helpers, and reading rows back."""
