"""Watching the processes work: Prometheus metrics, the health endpoint, JSON logs.

metrics.py       what a worker counts while it runs jobs
metrics_http.py  the /metrics and /healthz endpoint that the watcher and workers serve
log_format.py    text or JSON log lines, tagged with the job
monitoring.py    all of it hooked into a Celery worker (signals and a worker step)
"""
