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
from livercore.phantom.volume import (
    VolumeCase,
    export_volumes,
    generate_volume_case,
    write_dicom_study,
    write_nifti_case,
    write_seg,
)

__all__ = [
    "NAMED_COHORTS",
    "Case",
    "ImageSet",
    "VolumeCase",
    "cirrhosis_flags",
    "cohort_layout",
    "cohort_size",
    "export_volumes",
    "generate_case",
    "generate_volume_case",
    "write_dicom_study",
    "write_nifti_case",
    "write_seg",
]
