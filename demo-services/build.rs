//! Generates the gRPC code of `proto/user.proto` with no system `protoc`:
//! protox (a protobuf compiler written in Rust) parses the file into a
//! descriptor set, tonic-prost-build turns that into messages, a server
//! and a client, and the encoded set is kept for server reflection.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/user.proto";
    println!("cargo:rerun-if-changed={proto}");
    println!("cargo:rerun-if-changed=build.rs");

    let mut compiler = protox::Compiler::new(["proto"])?;
    // Source info carries the comments into the generated docs and into
    // what reflection shows.
    compiler.include_source_info(true);
    compiler.open_file("user.proto")?;

    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("user_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;
    tonic_prost_build::configure()
        // The demo serves through its own hyper loop and calls through
        // hyper-util: no `connect` helpers tied to tonic's transport.
        .build_transport(false)
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
