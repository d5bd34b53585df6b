"""Internal: the Ray actors, thin shells around runtime/ (namespace, instance, timer, pool).
handles.py sets every actor name and option."""

__all__: list[str] = []
