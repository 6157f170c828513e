"""The HTTP edge: middleware in order, errors and their handlers, rate limits, request hygiene."""
