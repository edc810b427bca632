"""Pure image functions on numpy arrays: decode, find cells, crop, classify, count, draw.

Nothing here touches the database, the object store or the network, so the same code
runs in ``bloodcount analyze``, in a Celery worker and in tests.
"""

CLASSES = ("RBC", "WBC", "Platelets")

# The one place class colours are defined (hex), shared by overlays, plots and the web
# pages. Kept here, free of OpenCV, so the API process can read them cheaply.
CLASS_COLOURS = {"RBC": "#d62728", "WBC": "#6a3d9a", "Platelets": "#2ca02c"}
REVIEW_COLOUR = "#ffbf00"
# Colour is not the only sign of a class: each also has its own line, so that a reader who
# cannot tell red from green still tells the classes apart, on the overlays and the web
# pages alike: (CSS border style, dash and gap in line widths, or None for a solid line).
CLASS_LINES = {
    "RBC": ("solid", None),
    "WBC": ("dashed", (4.5, 2)),
    "Platelets": ("dotted", (1, 1.5)),
}

# How a TIFF file begins: classic TIFF and BigTIFF, in either byte order. One list for the
# upload sniffer (API, no OpenCV) and the decoder, so the two cannot drift apart again.
TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
