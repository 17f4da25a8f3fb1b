//! Compiles `proto/` with protox (pure Rust, no system `protoc`) and writes the
//! encoded descriptor set that server reflection serves.

use std::{env, fs, io, path::PathBuf};

use prost::Message;

const PROTO_ROOT: &str = "proto";

fn main() -> io::Result<()> {
    // tonic-prost-build does not reliably emit these itself (grpc-rust #2415).
    println!("cargo:rerun-if-changed={PROTO_ROOT}");
    let files = proto_files(PROTO_ROOT.into())?;
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }

    let fds = protox::compile(&files, [PROTO_ROOT]).map_err(io::Error::other)?;
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").ok_or_else(|| io::Error::other("OUT_DIR unset"))?);
    fs::write(out_dir.join("customers_descriptor.bin"), fds.encode_to_vec())?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)
}

/// Every `.proto` file below `dir`, sorted so builds are reproducible.
fn proto_files(dir: PathBuf) -> io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![dir];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                println!("cargo:rerun-if-changed={}", path.display());
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "proto") {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}
