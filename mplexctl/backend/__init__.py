"""Thin edges that talk to the kernel: bpf(2) syscalls, BCC compile/load, netlink (pyroute2).

Only modules in this package import bcc or pyroute2.
"""
