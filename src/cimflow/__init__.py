"""cimflow: from data to a charge-domain computing-in-memory chip estimate."""
