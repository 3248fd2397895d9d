//! Connecting to RabbitMQ and declaring the topology a service needs.

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
        let connection = Connection::connect(&config.amqp_url, properties).await?;
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

/// Names the connection after the namespace and service, so an operator (or a test)
/// can find it in `rabbitmqctl list_connections`.
pub fn connection_name(config: &EventsConfig, service: &str) -> String {
    format!("{} {service}", config.namespace)
}

/// Declares the exchange and every subscription's queue, bindings and dead-letter
/// queue: the whole topology, not only this service's, so an event always has a queue
/// to go to whatever the start order. Every declaration is idempotent, so this runs at
/// every (re)connection.
pub async fn declare(channel: &Channel, config: &EventsConfig, subscriptions: &[Subscription]) -> lapin::Result<()> {
    let durable = ExchangeDeclareOptions { durable: true, ..Default::default() };
    channel
        .exchange_declare(config.exchange().as_str().into(), ExchangeKind::Topic, durable, FieldTable::default())
        .await?;
    for subscription in subscriptions {
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
