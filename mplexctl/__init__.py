"""mplexctl: one declarative YAML file -> a running XDP packet multiplexer.

Pipeline: load -> validate -> compile -> probe live state -> plan -> apply -> verify.
"""

__version__ = "0.1.0"
