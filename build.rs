//! Compiles the protobuf files with protox (a pure-Rust protobuf compiler), so no system protoc
//! is needed: proto/mesh.proto (wire messages, prost) and proto/client.proto (the gRPC client
//! API, prost messages plus tonic client and server code).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `meshd --version` names the optimisation level: `cargo bench` writes its speed-optimised
    // build to the same target/release/meshd, and the real-process benches refuse it (its
    // code is twice the size, and RSS counts code pages).
    let opt_level = std::env::var("OPT_LEVEL").unwrap_or_else(|_| "unknown".into());
    println!("cargo:rustc-env=MESHD_OPT_LEVEL={opt_level}");

    println!("cargo:rerun-if-changed=proto/mesh.proto");
    let descriptors = protox::compile(["proto/mesh.proto"], ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;

    println!("cargo:rerun-if-changed=proto/client.proto");
    let client = protox::compile(["proto/client.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // No `connect()` helper: it needs tonic's transport; callers build their own channel.
        .build_transport(false)
        // Tags are a BTreeMap in the core too: sorted, and no conversion.
        .btree_map(".")
        .compile_fds(client)?;
    Ok(())
}
