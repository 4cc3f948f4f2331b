"""The compiler half of mlc: the shared IR, frontends, and passes."""
