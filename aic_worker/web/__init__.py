"""The dashboard and the JSON API of `aic-admin serve` (issue #16).

```
 app.py      create_app(): FastAPI over a catalog's sessions, the routers below mounted
 auth.py     reads open; writes need `Authorization: Bearer $AIC_API_TOKEN`
 api.py      /api/v1: the CLI's --json documents (catalog/reports.py) and its actions
 actions.py  the writes: retry, recompress, restore, add (queued for the workers)
 preview.py  decoded archives as PNG, cached on disk under AIC_HOME, bounded
 pages.py    the HTML pages (templates/, static/: shipped in the package, no CDN)
```
Torch-free on import: only a preview decodes, and it loads the codec when first asked.
"""
