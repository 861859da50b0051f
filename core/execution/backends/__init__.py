"""Where TFF computations execute: TFF's C++ worker, isolation for it."""
