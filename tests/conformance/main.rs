//! Conformance: berth driven by the clients users run, built from their own Go
//! modules by `hack/tools.sh` (crictl and critest from cri-tools, kubelet from
//! kubernetes), and by an HTTP/2 client of the kind older gRPC stacks are.

#[path = "../support/mod.rs"]
mod support;

mod critest;
mod crictl;
mod installer;
mod manifests;
mod kubelet;
mod old_client;
