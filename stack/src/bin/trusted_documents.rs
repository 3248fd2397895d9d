//! Writes the trusted-documents manifest, `router/trusted-documents.json`, from the
//! README's tour (see `stack::trusted_documents`). `make trusted-documents` runs it.

fn main() -> anyhow::Result<()> {
    let manifest = stack::trusted_documents::manifest_from_readme()?;
    std::fs::write(stack::trusted_documents::MANIFEST_FILE, manifest)?;
    println!("wrote {}", stack::trusted_documents::MANIFEST_FILE);
    Ok(())
}
