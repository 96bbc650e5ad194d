"""Stands in for pyarrow in camera actor processes, and refuses to load.

Camera actors build Python event objects; Arrow tables are made by the
aggregators and the warehouse sink. Ray imports pyarrow into every worker
that can import it (to register serializers for Ray Data), which costs a
camera process ~35 MB of its resident memory for nothing. The controller
puts this folder first on the camera actors' ``PYTHONPATH`` so that import
fails the way a missing pyarrow does, and Ray skips those serializers.
"""

raise ModuleNotFoundError("pyarrow is kept out of camera actor processes", name="pyarrow")
