"""Workflow definitions below the public ``orchestrate.workflow``: call plans and nodes.

This layer never imports the engine: ``Workflow.run`` reaches it through the seam in
:mod:`orchestrate._definitions.seam`.
"""
