"""Internal: LMDB (and in-memory) storage, no Ray. keys.py is the only module that knows the key
layout; records.py the stored records and states; codec.py the msgpack encoding (never pickle);
instances.py the typed transactions; kv.py the stores."""

__all__: list[str] = []
