//! Prints a development token, signed by the running development issuer.
//!
//!     make token ROLE=customer ID=<uuid>     (dev-token customer [CUSTOMER_ID])
//!     make token ROLE=operator               (dev-token operator [NAME])
//!
//! Asks `DEV_ISSUER_URL` (default http://127.0.0.1:4010, where `make run` starts it);
//! the token is valid for 30 days. This command holds no key: only the issuer does.

fn main() {
    let mut args = std::env::args().skip(1);
    let role = args.next();
    let subject = args.next();
    if let Err(message) = dev_issuer::identity_for(role.as_deref(), subject.clone()) {
        exit_with(&format!("{message}\nusage: dev-token customer [CUSTOMER_ID] | dev-token operator [NAME]"));
    }
    let base =
        std::env::var("DEV_ISSUER_URL").unwrap_or_else(|_| format!("http://127.0.0.1:{}", dev_issuer::DEFAULT_PORT));
    let mut query = vec![("role", role.unwrap_or_else(|| "customer".into()))];
    if let Some(subject) = subject {
        query.push(("subject", subject));
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let asked = runtime.block_on(async {
        let response = reqwest::Client::new().get(format!("{base}/token")).query(&query).send().await?;
        let status = response.status();
        let body = response.text().await?;
        Ok::<_, reqwest::Error>((status, body))
    });
    match asked {
        Ok((status, token)) if status.is_success() => println!("{token}"),
        Ok((status, body)) => exit_with(&format!("the development issuer at {base} answered {status}: {body}")),
        Err(error) => exit_with(&format!(
            "no development issuer at {base} ({error}): start the system with `make run` (or compose) first"
        )),
    }
}

fn exit_with(message: &str) -> ! {
    eprintln!("{message}");
    std::process::exit(2);
}
