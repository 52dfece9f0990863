//! Writing the kept documents and the cluster report (see `write_output`).
