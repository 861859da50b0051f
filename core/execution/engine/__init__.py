"""The TFF computations of one run and the loop over its rounds."""
