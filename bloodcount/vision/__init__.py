"""Pure image functions on numpy arrays: decode, find cells, crop, classify, count, draw.

Nothing here touches the database, the object store or the network, so the same code
runs in ``bloodcount analyze``, in a Celery worker and in tests.
"""

CLASSES = ("RBC", "WBC", "Platelets")
