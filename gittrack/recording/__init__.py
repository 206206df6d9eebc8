"""Recording a run: the decorator, the run session, what it captures, its inputs and outputs."""
