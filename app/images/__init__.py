"""The rules of the image API (ownership, limits, listing, the order of writes) and the
upkeep that makes every interrupted flow converge (the sweep, reconcile, backfill)."""
