"""The triphasic liver CT phantom (../shared/docs/phantom.md): cohorts of synthetic cases."""

from livercore.phantom.cohort import (
    NAMED_COHORTS,
    Case,
    ImageSet,
    cirrhosis_flags,
    cohort_layout,
    cohort_size,
    generate_case,
)

__all__ = [
    "NAMED_COHORTS",
    "Case",
    "ImageSet",
    "cirrhosis_flags",
    "cohort_layout",
    "cohort_size",
    "generate_case",
]
