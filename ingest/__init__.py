"""Ingestion: decoding and validating pushed batches, the bus, and the writer."""
