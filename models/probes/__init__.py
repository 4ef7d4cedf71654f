"""Probes: pure-torch measurements of a model at given parameters (no training loop, no Ray).

- ``curvature``: the Adam loss-spike probe row (λ_max of H and of Adam's preconditioned Hessian, directional
  curvatures, alignment, thresholds), built on ``hessian`` (Hessian-vector products), ``lanczos`` (top
  eigenpairs) and ``adam`` (the preconditioner from the optimizer state, and the cheap per-step Adam
  statistics).
- ``rank``: empirical model rank (rank of the parameter Jacobian over generic inputs) and the closed-form
  model ranks / optimistic sample sizes of arXiv:2211.11623, 2307.08921, 2406.18035.
"""
