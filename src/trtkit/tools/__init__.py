"""Tools built on the builder and the runtime: compare, bench, layers, triton export, torch export."""
