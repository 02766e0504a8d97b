"""Statistics: counters kept on the write path and generation records, read with fixed-cost queries."""
