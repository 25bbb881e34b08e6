"""Stages: what the workflow's rules call (``mixer train``, ``mixer evaluate``) and the
metrics evaluation computes."""
