"""Offline analysis of run directories: recompute any algorithm's credit from the stored rollout records.

Nothing here is imported by the library or the learner; it reads what a run wrote.
"""

from creditzoo.analysis.credit import CreditComparison, compare_credit, load_records, recompute

__all__ = ["CreditComparison", "compare_credit", "load_records", "recompute"]
