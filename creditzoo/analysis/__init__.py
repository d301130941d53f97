"""Offline analysis of run directories: studies of what runs recorded, nothing is sampled.

- :mod:`.credit`: rollout records, replaying any algorithm on them, noisy vs clean credit.
- :mod:`.runs`: reading run and sweep directories (config, metrics, evaluations).
- :mod:`.turning_points`: turning-point statistics of every TP-GRPO variant on the same rollouts.
- :mod:`.compare`: groups, strata, budgets, curves and threshold costs of a comparison of runs.
- :mod:`.stats`: t intervals, Welch contrasts, Holm, interactions, the paired bootstrap (scipy, statsmodels).
- :mod:`.evaluation`: per-image final evaluations (``eval/final.json``) and test-set identity.
- :mod:`.report`: the comparison's markdown report, verdict sentences first.
- :mod:`.robustness`: the counterfactual reward-noise study, the theory beside it, and the noise sweep.
- :mod:`.noise_theory`: increment sign flips and turning-point precision/recall predicted for Gaussian noise.
- :mod:`.plots`: the figures (the only module importing seaborn/matplotlib; import it explicitly).

Nothing here is imported by the library or the learner; it reads what a run wrote.
"""

from creditzoo.analysis.credit import CreditComparison, compare_credit, load_records, recompute

__all__ = ["CreditComparison", "compare_credit", "load_records", "recompute"]
