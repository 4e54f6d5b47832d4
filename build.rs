//! Compiles proto/mesh.proto with protox (a pure-Rust protobuf compiler), so no system protoc is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/mesh.proto");
    let descriptors = protox::compile(["proto/mesh.proto"], ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
