"""IO: one pass over one root (scan, read remotes, reconcile, apply, upload, publish, commit)."""
