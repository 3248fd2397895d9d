//! `dev-issuer`: the development identity provider (see the library).
//!
//!     dev-issuer                         serve (DEV_ISSUER_LISTEN, 127.0.0.1:4010;
//!                                        key in DEV_ISSUER_KEY, .dev/issuer-key.pem)
//!     dev-issuer new-key <file>          write a new P-256 private key (e.g. a
//!                                        service's own key, SERVICE_KEY_FILE)
//!     dev-issuer jwks-of <file>          print the JWKS of a private key's public half
//!                                        (what the called service trusts)

use std::path::PathBuf;

use anyhow::Context;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        None => serve().await,
        Some("new-key") => {
            let path = PathBuf::from(args.next().context("usage: dev-issuer new-key <file>")?);
            if path.exists() {
                anyhow::bail!("{} exists: not overwriting a key", path.display());
            }
            identity::token::load_or_create_private_key(&path, true).map_err(anyhow::Error::msg)?;
            eprintln!("wrote a new P-256 private key to {} (mode 0600)", path.display());
            Ok(())
        }
        Some("jwks-of") => {
            let path = PathBuf::from(args.next().context("usage: dev-issuer jwks-of <file>")?);
            let pem = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            let key = identity::TokenIssuer::from_pem(&pem, "", "").map_err(anyhow::Error::msg)?;
            println!("{}", serde_json::to_string_pretty(&key.jwks())?);
            Ok(())
        }
        Some(other) => anyhow::bail!("unknown command {other:?}: dev-issuer [new-key <file> | jwks-of <file>]"),
    }
}

async fn serve() -> anyhow::Result<()> {
    let listen =
        std::env::var("DEV_ISSUER_LISTEN").unwrap_or_else(|_| format!("127.0.0.1:{}", dev_issuer::DEFAULT_PORT));
    let key_file = PathBuf::from(std::env::var("DEV_ISSUER_KEY").unwrap_or_else(|_| ".dev/issuer-key.pem".into()));
    let issuer = dev_issuer::issuer_from_key_file(&key_file)?;
    let listener = tokio::net::TcpListener::bind(&listen).await.with_context(|| format!("binding {listen}"))?;
    eprintln!(
        "dev-issuer: signing as {} with key {} ({}); JWKS at http://{listen}{}",
        dev_issuer::DEV_ISSUER,
        issuer.key_id(),
        key_file.display(),
        dev_issuer::JWKS_PATH
    );
    let stop = async {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("a SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    };
    tokio::select! {
        served = dev_issuer::serve(listener, issuer) => served.context("serving")?,
        () = stop => {}
    }
    Ok(())
}
