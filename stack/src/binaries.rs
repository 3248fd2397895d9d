//! Where the built binaries are: next to the running one (the `stack` launcher, a
//! benchmark), or one folder up (a test, which runs from `target/<profile>/deps`).

use std::path::PathBuf;

use anyhow::bail;

/// The path of binary `name` of this build (`router`, `inventory`, ...).
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let current = std::env::current_exe()?;
    let mut dir = current.parent().map(PathBuf::from);
    while let Some(candidate) = dir {
        let path = candidate.join(name);
        if path.is_file() {
            return Ok(path);
        }
        if candidate.file_name().is_some_and(|name| name == "debug" || name == "release") {
            break;
        }
        dir = candidate.parent().map(PathBuf::from);
    }
    bail!(
        "the {name} binary is not built next to {}: run `cargo build --workspace --bins` first (`make test` and `make run` do)",
        current.display()
    )
}
