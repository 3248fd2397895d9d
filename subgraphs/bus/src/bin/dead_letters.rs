//! Lists or replays a service's dead letters.
//!
//!     dead-letters SERVICE list
//!     dead-letters SERVICE replay MESSAGE_ID
//!     dead-letters SERVICE replay --all
//!
//! SERVICE is inventory, rental, payment or delivery. The broker and namespace come
//! from `AMQP_URL` and `EVENTS_NAMESPACE`, as for the services. A replayed message goes
//! back to that service's queue only and has exactly one effect (docs/events.md).

use event_bus::dead_letters::{self, Selection};
use subgraph_kit::config::events_from_env;

const SERVICES: [&str; 4] = ["inventory", "rental", "payment", "delivery"];

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let outcome = match words.as_slice() {
        [service, "list"] if SERVICES.contains(service) => list(service).await,
        [service, "replay", "--all"] if SERVICES.contains(service) => replay(service, Selection::All).await,
        [service, "replay", id] if SERVICES.contains(service) => match id.parse() {
            Ok(id) => replay(service, Selection::One(id)).await,
            Err(_) => Err(anyhow::anyhow!("{id:?} is not a message id (a UUID, as `list` shows)")),
        },
        _ => {
            eprintln!("usage: dead-letters SERVICE list | dead-letters SERVICE replay (MESSAGE_ID | --all)");
            eprintln!("       SERVICE is one of {}", SERVICES.join(", "));
            std::process::exit(2);
        }
    };
    if let Err(error) = outcome {
        eprintln!("dead-letters: {error:#}");
        std::process::exit(1);
    }
}

async fn list(service: &str) -> anyhow::Result<()> {
    let config = events_from_env()?;
    let letters = dead_letters::list(&config, service).await?;
    println!("{} dead letter(s) in {}", letters.len(), config.dead_letter_queue(service));
    for letter in letters {
        let id = letter.id.map(|id| id.to_string()).unwrap_or_else(|| "-".into());
        println!();
        println!("  id      {id}");
        println!("  event   {}", letter.event_type);
        println!("  reason  {}", letter.reason);
        if let Some(at) = letter.at {
            println!("  at      {at}");
        }
        if !letter.summary.is_empty() {
            println!("  about   {}", letter.summary);
        }
    }
    Ok(())
}

async fn replay(service: &str, selection: Selection) -> anyhow::Result<()> {
    let config = events_from_env()?;
    let replayed = dead_letters::replay(&config, service, selection).await?;
    if replayed == 0 && matches!(selection, Selection::One(_)) {
        anyhow::bail!("no dead letter with that id in {}", config.dead_letter_queue(service));
    }
    println!("replayed {replayed} message(s) into {}", config.queue(service));
    Ok(())
}
