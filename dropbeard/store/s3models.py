"""botocore's data loader, cheaper (imports botocore: imported when a client is created,
by `dropbeard.store.s3client.model_loader`)."""

from __future__ import annotations

import os
from typing import Any

import msgspec
from botocore.loaders import JSONFileLoader, instance_cache
from botocore.loaders import Loader as BotocoreLoader


class JSONFiles(JSONFileLoader):  # type: ignore[misc]
    """botocore's model files (`.json`, `.json.gz`) decoded by msgspec: about three times
    faster than the standard library with the OrderedDict hook botocore uses (plain dicts
    keep the order too). A fresh process reads ~3.5 MB of them for its first client."""

    def _load_file(self, full_path: str, open_method: Any) -> Any:
        if not os.path.isfile(full_path):
            return None
        with open_method(full_path, "rb") as fp:
            return msgspec.json.decode(fp.read())


class Loader(BotocoreLoader):  # type: ignore[misc]
    """botocore's data loader, cheaper for a one-shot command: model files decoded by
    msgspec, and the services it knows listed from their folders' names (botocore also
    lists every version folder of all ~400 services, ~900 listings, only to check the
    one asked for: `determine_latest_version` still fails for a service with no model
    of that type)."""

    FILE_LOADER_CLASS = JSONFiles

    @instance_cache  # type: ignore[untyped-decorator]
    def list_available_services(self, type_name: str) -> list[str]:
        found: set[str] = set()
        for folder in self._potential_locations():
            found.update(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)))
        return sorted(found)
