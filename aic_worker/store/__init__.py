"""Files on disk: where an archive goes, and what becomes of the original.

archive.py  the archive's layout, staging (temp name, fsync) and placing a `.aic` file; sha256
policy.py   keep, move or delete the original once its archive is committed
"""
