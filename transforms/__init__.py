"""Pure functions from Segment rows to Connect payloads: DataFrame in, DataFrame out, no I/O."""
