"""File kinds and output names, torch-free, so the CLI can route inputs before loading torch."""

from __future__ import annotations

# Output formats by extension; JPEG cannot keep alpha, the others can.
FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF"}
KEEPS_ALPHA = {"PNG", "WEBP", "TIFF"}
# Extensions that batch mode treats as images when it walks a folder.
IMAGE_EXTENSIONS = set(FORMATS) | {".bmp", ".gif", ".jfif", ".ppm", ".pgm", ".tga"}
# An input with one of these is a video to dream frame by frame.
VIDEO_INPUTS = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v"}
# Animation outputs (a zoom may also write a folder of PNGs).
ANIMATIONS = {".gif", ".webp", ".mp4"}
# Batch output names: the --name default and the fields a template may use.
DEFAULT_TEMPLATE = "{stem}_dream.png"
TEMPLATE_FIELDS = ("stem", "ext", "preset", "layer", "index")
