//! The conformance suite and the Cluster-only guarantees, against a real Redis Cluster (3
//! masters, one replica each) that the harness starts.

mod conformance;
mod support;

conformance_suite!(support::cluster::shared_cluster_backend());
