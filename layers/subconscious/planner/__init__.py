"""Pure planning functions: what to quote, what to rent. No I/O, so the simulator can run them."""
