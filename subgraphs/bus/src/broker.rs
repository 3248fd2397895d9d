//! Connecting to RabbitMQ and declaring the topology a service needs.

use anyhow::Context;
use lapin::options::{ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use std::sync::Mutex;

use crate::Subscription;
use subgraph_kit::config::EventsConfig;

/// A connection and the channels opened on it, closed channels first.
///
/// A channel dropped while its connection is closing asks lapin to close it after the
/// connection has already marked it closing; lapin then reports a connection error on a
/// clean stop. Closing every channel before the connection keeps a stop quiet.
pub struct Link {
    connection: Connection,
    channels: Mutex<Vec<Channel>>,
}

impl Link {
    pub async fn open(config: &EventsConfig, service: &str) -> lapin::Result<Self> {
        let properties = ConnectionProperties::default().with_connection_name(connection_name(config, service).into());
        let connection = match &config.amqp_ca_file {
            Some(ca) => connect_tls(&config.connection_url(), ca, properties).await?,
            None => Connection::connect(&config.connection_url(), properties).await?,
        };
        Ok(Self { connection, channels: Mutex::new(Vec::new()) })
    }

    pub async fn channel(&self) -> lapin::Result<Channel> {
        let channel = self.connection.create_channel().await?;
        self.channels.lock().expect("channels lock").push(channel.clone());
        Ok(channel)
    }

    /// A channel with publisher confirms on, for the relay.
    pub async fn publisher_channel(&self) -> lapin::Result<Channel> {
        let channel = self.channel().await?;
        channel.confirm_select(ConfirmSelectOptions::default()).await?;
        Ok(channel)
    }

    /// Closes the channels, then the connection; a link already broken is left as it is.
    pub async fn close(self, reason: &str) {
        let channels = std::mem::take(&mut *self.channels.lock().expect("channels lock"));
        for channel in channels {
            if channel.status().connected() {
                let _ = channel.close(200, reason.into()).await;
            }
        }
        if self.connection.status().connected() {
            let _ = self.connection.close(200, reason.into()).await;
        }
    }
}

/// AMQPS trusting only the CA in `ca`, for the URL's host. lapin's own TLS would also
/// trust the platform's roots; ours is built here (`subgraph_kit::tls::client_trusting`,
/// rustls with ring, as for PostgreSQL and the service port) and handed to lapin's
/// low-level connector, which uses it for every (re)connection.
async fn connect_tls(url: &str, ca: &std::path::Path, properties: ConnectionProperties) -> lapin::Result<Connection> {
    let uri: lapin::uri::AMQPUri = url.parse().map_err(|error: String| std::io::Error::other(error))?;
    let tls = subgraph_kit::tls::client_trusting(ca).map_err(|error| std::io::Error::other(format!("{error:#}")))?;
    let connector = lapin::tcp::RustlsConnector::from(tls);
    let runtime = lapin::runtime::default_runtime()?;
    Connection::connector(
        uri,
        runtime,
        async move |uri: lapin::uri::AMQPUri, runtime| {
            let host = uri.authority.host.clone();
            let address = tokio::net::lookup_host((host.as_str(), uri.authority.port))
                .await?
                .next()
                .ok_or_else(|| std::io::Error::other(format!("{host} has no address")))?;
            let stream = lapin::tcp::AsyncTcpStream::connect(&runtime, address).await?;
            Ok(stream.into_rustls(&connector, &host).await?)
        },
        properties,
    )
    .await
}

/// Names the connection after the namespace and service, so an operator (or a test)
/// can find it in `rabbitmqctl list_connections`.
pub fn connection_name(config: &EventsConfig, service: &str) -> String {
    format!("{} {service}", config.namespace)
}

/// Declares the whole topology: the exchange, and every subscription's queue, bindings,
/// dead-letter exchange and queue, so an event always has a queue to go to whatever the
/// start order. Provisioning does this with the broker's administrator (`make run`,
/// the tests, compose's definitions, the Kubernetes topology operator) before any
/// service starts: a service's own user may declare nothing of another's.
pub async fn declare_topology(
    channel: &Channel,
    config: &EventsConfig,
    subscriptions: &[Subscription],
) -> lapin::Result<()> {
    let durable = ExchangeDeclareOptions { durable: true, ..Default::default() };
    channel
        .exchange_declare(config.exchange().as_str().into(), ExchangeKind::Topic, durable, FieldTable::default())
        .await?;
    for subscription in subscriptions {
        declare_queue(channel, config, subscription.service, subscription.event_types).await?;
    }
    Ok(())
}

/// Declares the whole topology of `config`'s namespace over a connection of its own, as
/// `config`'s user (an administrator): what provisioning runs before any service starts.
pub async fn provision_topology(config: &EventsConfig, subscriptions: &[Subscription]) -> anyhow::Result<()> {
    let link = Link::open(config, "provisioning").await?;
    let declared = async { anyhow::Ok(declare_topology(&link.channel().await?, config, subscriptions).await?) }.await;
    link.close("provisioned").await;
    declared.with_context(|| format!("declaring the topology of {}", config.namespace))
}

/// Deletes what [`declare_topology`] made for `services` in `config`'s namespace, and the
/// exchange: a test's namespace when it ends. Whatever is already gone is passed over.
pub async fn remove_topology(config: &EventsConfig, services: &[&str]) -> anyhow::Result<()> {
    let link = Link::open(config, "cleanup").await?;
    let channel = link.channel().await?;
    for service in services {
        for queue in [config.queue(service), config.dead_letter_queue(service)] {
            let _ = channel.queue_delete(queue.as_str().into(), Default::default()).await;
        }
        let _ = channel.exchange_delete(config.dead_letter_exchange(service).as_str().into(), Default::default()).await;
    }
    let _ = channel.exchange_delete(config.exchange().as_str().into(), Default::default()).await;
    link.close("done").await;
    Ok(())
}

/// What a service declares at every (re)connection, with its own user: that the exchange
/// is there (passively: only provisioning makes it), and its own queue, bindings and
/// dead letters, which are idempotent and come back if someone deleted them. A listener
/// with no queue of its own passes `None`.
pub async fn declare_own(
    channel: &Channel,
    config: &EventsConfig,
    subscription: Option<&Subscription>,
) -> anyhow::Result<()> {
    let passive = ExchangeDeclareOptions { passive: true, ..Default::default() };
    let exchange = config.exchange();
    if let Err(error) =
        channel.exchange_declare(exchange.as_str().into(), ExchangeKind::Topic, passive, FieldTable::default()).await
    {
        anyhow::bail!(
            "the exchange {exchange} is not there ({error}): the broker has not been provisioned \
             (docs/security.md, \"Each service only its own\")"
        );
    }
    if let Some(subscription) = subscription {
        declare_queue(channel, config, subscription.service, subscription.event_types).await?;
    }
    Ok(())
}

async fn declare_queue(
    channel: &Channel,
    config: &EventsConfig,
    service: &str,
    event_types: &[&str],
) -> lapin::Result<()> {
    let queue_options = QueueDeclareOptions { durable: true, ..Default::default() };
    let dead_letters = config.dead_letter_queue(service);
    let mut dead_letter_arguments = FieldTable::default();
    dead_letter_arguments.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    channel.queue_declare(dead_letters.as_str().into(), queue_options, dead_letter_arguments).await?;
    // The consumer moves poison here, with its reason, through an exchange of this
    // service's own: publishing straight to the queue would take the default exchange,
    // and a user who may write to that may write to every queue.
    let durable = ExchangeDeclareOptions { durable: true, ..Default::default() };
    let dead_letter_exchange = config.dead_letter_exchange(service);
    channel
        .exchange_declare(dead_letter_exchange.as_str().into(), ExchangeKind::Fanout, durable, FieldTable::default())
        .await?;
    channel
        .queue_bind(
            dead_letters.as_str().into(),
            dead_letter_exchange.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;

    // A quorum queue counts deliveries; past the limit a message is dead-lettered, via
    // the default exchange, straight into this service's dead-letter queue. Consumers
    // dead-letter poison themselves (with its reason) and never requeue, so the limit
    // only catches a message that keeps killing its consumer before it can settle.
    let queue = config.queue(service);
    let mut arguments = FieldTable::default();
    arguments.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    arguments.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(config.delivery_limit));
    arguments.insert("x-dead-letter-exchange".into(), AMQPValue::LongString("".into()));
    arguments.insert("x-dead-letter-routing-key".into(), AMQPValue::LongString(dead_letters.as_str().into()));
    channel.queue_declare(queue.as_str().into(), queue_options, arguments).await?;
    for event_type in event_types {
        channel
            .queue_bind(
                queue.as_str().into(),
                config.exchange().as_str().into(),
                (*event_type).into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    Ok(())
}
