"""The evaluator: PromQL semantics over step-aligned numpy arrays."""
