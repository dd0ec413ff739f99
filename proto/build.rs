//! Compiles the wire contract without a system `protoc`: protox parses the `.proto` files into
//! a `FileDescriptorSet`, tonic-prost-build generates the Rust code from it, and the encoded
//! set is written to `$OUT_DIR/yimen_descriptor.bin` for `DESCRIPTOR_SET` (the compatibility
//! checker and gRPC reflection read it).

use std::error::Error;
use std::fs;
use std::path::{Path, PathBuf};

use prost::Message;

/// Include root: imports are written `yimen/v1/common.proto`.
const INCLUDE_DIR: &str = "proto";
/// Every `.proto` file of this directory is compiled, so a new file needs no edit here.
const PACKAGE_DIR: &str = "proto/yimen/v1";
/// Messages that carry personal data (ID numbers, names): no derived `Debug`.
const PERSONAL_MESSAGES: [&str; 7] = [
    ".yimen.v1.Applicant",
    ".yimen.v1.Helper",
    ".yimen.v1.Correction",
    ".yimen.v1.ApplicantInput",
    ".yimen.v1.HelperInput",
    ".yimen.v1.CorrectRequest",
    ".yimen.v1.CorrectRequest.correction",
];

fn main() -> Result<(), Box<dyn Error>> {
    let mut files: Vec<PathBuf> = fs::read_dir(PACKAGE_DIR)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.retain(|p| p.extension().is_some_and(|ext| ext == "proto"));
    files.sort();
    if files.is_empty() {
        return Err(format!("no .proto files in {PACKAGE_DIR}").into());
    }

    // compile_fds prints no rerun-if-changed: name every input, and the directory so that an
    // added file is seen too.
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={PACKAGE_DIR}");
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }

    let fds = protox::compile(&files, [INCLUDE_DIR])?;

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    fs::write(
        Path::new(&out_dir).join("yimen_descriptor.bin"),
        fds.encode_to_vec(),
    )?;

    // Messages carrying ID numbers and names get a masked Debug (src/convert/case.rs)
    // instead of the derived one, so that `{:?}` of a payload never logs them whole. The
    // match is by prefix: nested messages and oneofs of these are covered too.
    tonic_prost_build::configure()
        .skip_debug(PERSONAL_MESSAGES)
        .compile_fds(fds)?;
    Ok(())
}
