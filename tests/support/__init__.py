"""The one support package of the test suites and the benchmarks.

netns      network namespaces and veth pairs (Netlab), entering a namespace (in_netns)
frames     checksums, the IPv4/IPv6 UDP/TCP frame builder, reading L4 headers back
traffic    sockets read by a thread, raw frames and datagrams sent, paced UDP streams
foreign    someone else's XDP program, attached with BCC
lab        the two-host lab of the data-plane tests (sender netns -> veth -> appliance)
hosts      appliances driven through the CLI: host, wire, multi, and the role's sites
located    comparing loaded YAML (data and the line of every node)
previous_release   the previous release's program, for migration tests and benchmarks
"""
