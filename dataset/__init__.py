"""focalstack.dataset: the HDF5 contract (schema v1), its writer and reader, thin-lens optics and
ground-truth derivation. The ground floor: imports numpy, h5py and opencv, never bpy or torch."""

from .colour import linear_to_srgb8
from .groundtruth import canny_edges
from .optics import blur_diameter_px, defocus_maps, focal_length_px
from .reader import FocalStackFile
from .record import SceneRecord
from .schema import FORMAT, SCHEMA_VERSION, DatasetError
from .validate import ValidationReport, validate_file
from .writer import FocalStackWriter

__all__ = [
    "FORMAT",
    "SCHEMA_VERSION",
    "DatasetError",
    "FocalStackFile",
    "FocalStackWriter",
    "SceneRecord",
    "ValidationReport",
    "blur_diameter_px",
    "canny_edges",
    "defocus_maps",
    "focal_length_px",
    "linear_to_srgb8",
    "validate_file",
]
