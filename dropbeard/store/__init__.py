"""Object stores: the `Store` protocol, its backends (local directory, S3) and wrappers."""

from dropbeard.store.base import ListPage, ObjectInfo, Store

__all__ = ["ListPage", "ObjectInfo", "Store"]
