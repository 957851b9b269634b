"""The dashboard and the JSON API of `aic-admin serve` (issue #16).

```
 app.py           create_app(): FastAPI over a catalog, the routers below mounted; its settings
 auth.py          reads open; writes need `Authorization: Bearer $AIC_API_TOKEN`; the Host check
 dependencies.py  a catalog session per request (read-only unless the route writes)
 api.py           /api/v1: the CLI's --json documents (catalog/reports.py), previews, the writes
 actions.py       the writes: retry, recompress, restore, add (jobs queued for the workers)
 preview.py       decoded archives as PNG, cached on disk under AIC_HOME, bounded
 kept_report.py   whole-catalog reports (stats, the hourly chart) kept and refreshed in the background
 pages.py         the HTML pages (templates/, static/: shipped in the package, no CDN)
```
Torch-free on import: only a preview decodes, and it loads the codec when first asked.
"""
