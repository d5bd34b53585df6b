"""Ray's GCS key-value store as the cluster-wide store of cron tick claims
(runtime/tick_claims.py): the GCS adds a key only if it is absent, atomically, for every node."""

from __future__ import annotations

from ray.experimental import internal_kv

_NAMESPACE = "raydo"


class GcsClaimStore:
    def add(self, key: bytes, value: bytes) -> bool:
        existed = internal_kv._internal_kv_put(key, value, overwrite=False, namespace=_NAMESPACE)
        return not existed

    def get(self, key: bytes) -> bytes | None:
        found: bytes | None = internal_kv._internal_kv_get(key, namespace=_NAMESPACE)
        return found

    def keys(self, prefix: bytes) -> list[bytes]:
        return list(internal_kv._internal_kv_list(prefix, namespace=_NAMESPACE) or [])

    def delete(self, key: bytes) -> None:
        internal_kv._internal_kv_del(key, namespace=_NAMESPACE)
