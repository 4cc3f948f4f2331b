"""Verification of µGraph candidates: finite-field arithmetic, the reference lowering of an IR
graph, and the probabilistic (field + float) equivalence check."""

from .field import FieldArith, FieldValue, P, Q, random_field_value, random_omega
from .lowering import LOWERINGS, lower_to_mugraph
from .probabilistic import (
                            DEFAULT_TRIALS,
                            DEGREE_BOUND,
                            PER_TRIAL_BOUND,
                            TARGET_FALSE_ACCEPT,
                            Verdict,
                            trials_for,
                            verify,
                            verify_each,
                            verify_many,
)

__all__ = ["DEFAULT_TRIALS", "DEGREE_BOUND", "LOWERINGS", "P", "PER_TRIAL_BOUND", "Q",
           "TARGET_FALSE_ACCEPT", "FieldArith", "FieldValue", "Verdict", "lower_to_mugraph",
           "random_field_value", "random_omega", "trials_for", "verify", "verify_each",
           "verify_many"]
