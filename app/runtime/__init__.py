"""Process parts: WSGI server, lifecycle, logs, metrics, engine tuning, limiter, audit mirror."""
