"""Scoring predictions on the affective benchmarks: label extraction from answers and the field's metrics.

classification (closed-set scores used in training), wheel / wheel_tables (MER-UniBench emotion wheels),
mer_unibench, mintrec, avamerg, emer (one module per benchmark family), judge (LLM judge client and prompts),
suite (matching, checkpoint selection), report, labels (the ground-truth reader); the CLI is
`python -m nanoemox_jax.evaluate`. The predictions it scores are `nanoemox_jax.data.predictions` files.
"""
