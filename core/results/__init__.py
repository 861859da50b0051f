"""The HDF5 results file: writing, reading, reports."""
