"""The catalog: the SQL record of every file, ratio, model and job (the source of truth).

models.py        tables and the enums of states and kinds
engine.py        which database (AIC_DATABASE_URL / AIC_HOME), engines and sessions
migrate.py       upgrading the schema from code (aic-admin db upgrade, daemons on start)
sources.py       sources, their paths and archive versions
codec_models.py  the codec models archives were written with
jobs.py          creating jobs idempotently
lease.py         claiming, renewing, completing and failing jobs; reaping dead leases
retry.py         failed and quarantined jobs back to pending, a batch a transaction
upsert.py        INSERT … ON CONFLICT DO NOTHING on PostgreSQL and SQLite

Nothing here knows of torch, files on disk or the broker.
"""
