"""Everything that consumes what the aggregators produce, behind one port
(port.py): the warehouse, the live hub, and whatever else takes batches."""
