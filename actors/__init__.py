"""Ray actors: thin shells around core objects (cameras, aggregators, sink,
controller, live hub). They move batches and handle lifecycle, checkpoints
and failures; no counting logic lives here."""
