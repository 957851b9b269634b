"""The Celery side: a job id comes in from the broker, the catalog's lease is claimed, the work runs.

queue.py       the Celery app and its settings; publishing job ids; what the broker holds
tasks.py       the tasks (one per job kind, thin: claim -> runner) and the reaper's worker step
runner.py      one claimed job: its kind's work under a renewed lease, and its outcome
pipeline.py    the work of each kind: compress, recompress, restore, verify
batch.py       compress jobs of one model that wait together, encoded as one batch
heartbeat.py   renewing a running job's lease
reaper.py      taking back expired leases and re-sending what the broker lost
backlog.py     how much work waits: the catalog's jobs by state and the queue's depth
parameters.py  what a compress job carries (folder, archive root, policy)
errors.py      how a job's work stops early, and waiting out a database or broker that is away
main.py        `aic-worker`, the worker's command line

Importing the app (queue.py) loads neither torch nor the tasks: the watcher and `aic-admin`
publish through it; only a worker imports tasks.py.
"""
