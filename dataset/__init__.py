"""focalstack.dataset: the HDF5 contract (schema v3, reading v1 and v2 too), its writer and reader, thin-lens
optics, ground-truth derivation, and the field's formats (FoD500 folders, DDFF-12 files). The ground
floor: imports numpy, h5py and opencv (and OpenEXR for EXR files, when asked to), never bpy or torch.

Which ground truth a file holds: ``FocalStackFile(path).ground_truth``, a dict from each ground-truth
dataset name (``schema.GROUND_TRUTH_NAMES``) to a ``GroundTruth`` (``.present``, ``.source``,
``.stored``, ``.no_data``); ``FocalStackFile.has(name)`` for short.
"""

from .colour import linear_to_srgb8
from .groundtruth import canny_edges
from .optics import blur_diameter_px, defocus_maps, focal_length_px
from .provenance import GroundTruth
from .reader import FocalStackFile
from .record import SceneRecord
from .schema import FORMAT, READABLE_VERSIONS, SCHEMA_VERSION, DatasetError
from .validate import ValidationReport, validate_file
from .writer import FocalStackWriter

__all__ = [
    "FORMAT",
    "READABLE_VERSIONS",
    "SCHEMA_VERSION",
    "DatasetError",
    "FocalStackFile",
    "FocalStackWriter",
    "GroundTruth",
    "SceneRecord",
    "ValidationReport",
    "blur_diameter_px",
    "canny_edges",
    "defocus_maps",
    "focal_length_px",
    "linear_to_srgb8",
    "validate_file",
]
