"""The scenario language: grammar-driven parser, spec objects, formatter."""
