"""``fusion-gateway compare``: fusion pools against a fine-tuned baseline, offline, on a dataset.

Every item goes through the gateway's own HTTP API (the path production traffic takes), each answer is
scored against the dataset's reference, a judge model states a pairwise preference, and the figures go
to ``summary.json``, ``report.md`` and a self-contained ``report.html``.
"""
