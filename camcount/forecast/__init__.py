"""Short-term forecasts of window counts: what the next hour will bring,
per counter and group, updated as windows close."""
