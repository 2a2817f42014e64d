//! Compiles berth's CRI definition (`proto/runtime/v1/api.proto`) into the
//! `cri` module: messages with prost, both services' servers and clients with
//! tonic; berth's own API (`proto/berth/v1/`, the pull progress service) into
//! `berth_api::v1`, its server and client, reusing the CRI's messages; and
//! NRI's (`proto/nri/api.proto`) into `nri::api`, messages only.
//! protox parses the protos in Rust, so building berth needs no `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A position-independent executable has its pointers to itself (vtables,
    // static strings: `.data.rel.ro`, the GOT) relocated by the loader at every
    // exec, which makes those pages private to each process: 0.4 MiB per
    // monitor, one monitor per container. Linked at a fixed address they stay
    // shared page cache. The price is ASLR for the monitor's own image (its
    // libraries, heap and stack are still randomised), as for Go's containerd
    // shims, which Go links the same way.
    println!("cargo:rustc-link-arg-bin=berth-monitor=-no-pie");
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(["runtime/v1/api.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // For `berth`'s client commands' `-o json|yaml`: field names as
        // crictl prints them (protobuf's JSON names).
        .message_attribute(".runtime.v1", "#[derive(serde::Serialize)] #[serde(rename_all = \"camelCase\")]")
        .enum_attribute(".runtime.v1", "#[derive(serde::Serialize)]")
        .compile_fds(descriptors)?;
    let descriptors = protox::compile(["berth/v1/progress.proto"], ["proto"])?;
    // Its CRI imports are the cri module's (extern_path), yet prost writes a
    // file for them too, empty: in a directory of its own, it cannot
    // overwrite the cri module's.
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("berth_api");
    std::fs::create_dir_all(&out_dir)?;
    tonic_prost_build::configure()
        .out_dir(out_dir)
        .build_client(true)
        .build_server(true)
        .extern_path(".runtime.v1", "crate::cri::v1")
        .compile_fds(descriptors)?;
    // NRI's services run over ttrpc, not gRPC: its messages only (src/nri/).
    let descriptors = protox::compile(["nri/api.proto"], ["proto"])?;
    tonic_prost_build::configure().build_client(false).build_server(false).compile_fds(descriptors)?;
    Ok(())
}
