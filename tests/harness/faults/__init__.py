"""What the fault-injection and process-kill tests share: a scripted workload driven over the
hub's public edges (``workload``), a normalized end state with its invariants (``state``) and
the fault plans built from the domain actors' message types (``faults``)."""
