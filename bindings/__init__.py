"""What users hold (re-exported by `raydo`): the Workflow binding and WorkflowInstance handles
(workflow.py), Pending results (pending.py), init/shutdown (client.py)."""

__all__: list[str] = []
