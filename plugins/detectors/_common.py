"""What the built-in detectors share beyond tensor math (that is in
``fedarena.plugins._tensor``)."""

LAYERS_DOC = "names (substrings) of the layers whose parameters the detector looks at; empty: all"
