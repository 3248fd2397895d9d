//! How a service's start-up takes the bus on: `foundation.consume(TOPOLOGY, handler)`.

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use subgraph_kit::Foundation;
use subgraph_kit::app::Pipeline;
use tokio::sync::watch;

use crate::bus::{BusStop, EventBus, EventHandler};
use crate::metrics::metrics;
use crate::{Inbox, Subscription, outbox};

/// Starting a service's event bus from its [`Foundation`].
pub trait ConsumeEvents {
    /// Starts the event bus: declares `topology`, relays this service's outbox, and
    /// consumes its inbox with `handler`. The bus stops consuming when the service
    /// stops, and publishes what the last requests committed before it ends.
    fn consume<H: EventHandler>(&mut self, topology: &'static [Subscription], handler: H);
}

impl ConsumeEvents for Foundation {
    fn consume<H: EventHandler>(&mut self, topology: &'static [Subscription], handler: H) {
        let stop = BusStop { consuming: self.lifecycle.stopping().clone(), relaying: self.requests_done() };
        let bus = EventBus::start(self.config.events.clone(), topology, self.background.clone(), handler, stop);
        self.attach_pipeline(Box::new(bus));
        let service = <H::Inbox as Inbox>::SERVICE;
        let background = self.background.clone();
        self.on_scrape(Arc::new(move || {
            let background = background.clone();
            async move {
                if let Ok(backlog) = outbox::backlog(&background).await {
                    metrics().outbox_backlog.with_label_values(&[service]).set(backlog.rows);
                    metrics().outbox_oldest_age.with_label_values(&[service]).set(backlog.oldest_age.as_secs_f64());
                }
            }
            .boxed()
        }));
    }
}

impl Pipeline for EventBus {
    fn connection(&self) -> watch::Receiver<bool> {
        EventBus::connection(self)
    }

    fn stopped(self: Box<Self>) -> BoxFuture<'static, ()> {
        EventBus::stopped(*self).boxed()
    }
}
