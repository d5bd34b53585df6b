"""Internal: workflow semantics in plain asyncio (no Ray). The public names are re-exported by
`raydo`; everything here may change between releases.

engine.py (one activation), step.py (the `step` API), namespace.py (routing, queue, dispatch),
retrying.py (what follows a failed attempt), timers.py (durable wake-ups), clock.py, rules.py
(input rules), options.py, model.py (user-facing types), store.py (what runtime needs from storage),
local.py (in-process workers: what the instance actor wraps).
"""

__all__: list[str] = []
