"""The HDF5 results file: its one description (`schema`), the writer, the
one reader, and the reports made from it."""
