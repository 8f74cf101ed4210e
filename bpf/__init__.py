"""C sources of the XDP program, shipped inside the package as data."""
