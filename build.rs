//! Compiles berth's CRI definition (`proto/runtime/v1/api.proto`) into the
//! `cri` module: messages with prost, both services' servers and clients with
//! tonic; and NRI's (`proto/nri/api.proto`) into `nri::api`, messages only.
//! protox parses the protos in Rust, so building berth needs no `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(["runtime/v1/api.proto"], ["proto"])?;
    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(descriptors)?;
    // NRI's services run over ttrpc, not gRPC: its messages only (src/nri/).
    let descriptors = protox::compile(["nri/api.proto"], ["proto"])?;
    tonic_prost_build::configure().build_client(false).build_server(false).compile_fds(descriptors)?;
    Ok(())
}
