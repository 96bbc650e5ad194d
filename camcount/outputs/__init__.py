"""Everything that consumes what the aggregators produce, behind one port.

- ``port``: ``Sink``, ``Ack``, ``Guarantee``, the interface every output keeps;
- ``batching``: ``Outbox``, the batching a shard does before its outputs;
- ``tables``: a shard's output as typed batches (``batches_of``);
- ``live``: the live encoding, and ``LiveSink`` (the live hub);
- ``warehouse``: ``WarehouseOutput`` (the warehouse writer);
- ``archive``: ``ArchiveSink``, Parquet in object storage, and its readers;
- ``rebuild``: the warehouse rebuilt from the archive;
- ``settings`` and ``registry``: the ``outputs:`` config section and the
  factory of each output type.

Nothing is imported here: ``camcount.config`` reads ``settings`` in camera
processes, which keep pyarrow out (actors/_keep_out).
"""
