"""Evaluation on top of retrieval: IR metrics (ir-measures), paired significance tests, reports and plots, the
MTEB wrapper."""
