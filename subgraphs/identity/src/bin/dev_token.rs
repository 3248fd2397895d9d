//! Prints a signed development token.
//!
//!     make token ROLE=customer ID=<uuid>     (target/debug/dev-token customer [CUSTOMER_ID])
//!     make token ROLE=operator               (target/debug/dev-token operator)
//!
//! Signs with `JWT_SECRET` (or the dev-only default) and is valid for 30 days.

use std::time::Duration;

use identity::{DEV_CUSTOMER_ID, Identity, TokenIssuer, jwt_secret_from_env};
use uuid::Uuid;

fn main() {
    let mut args = std::env::args().skip(1);
    let identity = match (args.next().as_deref(), args.next()) {
        (Some("customer"), id) => {
            let id = id.unwrap_or_else(|| DEV_CUSTOMER_ID.to_owned());
            match Uuid::parse_str(&id) {
                Ok(customer_id) => Identity::Customer { customer_id },
                Err(_) => exit_with(&format!("{id:?} is not a customer id (a UUID)")),
            }
        }
        (Some("operator"), name) => Identity::Operator { subject: name.unwrap_or_else(|| "dev-operator".into()) },
        _ => exit_with("usage: dev-token customer [CUSTOMER_ID] | dev-token operator [NAME]"),
    };
    let token = TokenIssuer::new(&jwt_secret_from_env()).issue(&identity, Duration::from_secs(30 * 24 * 3600));
    println!("{token}");
}

fn exit_with(message: &str) -> ! {
    eprintln!("{message}");
    std::process::exit(2);
}
