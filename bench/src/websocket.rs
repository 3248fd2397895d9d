//! A customer tracking one rental's delivery through the router over graphql-transport-ws.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

pub const TRACK: &str = "subscription($id: ID!) { deliveryStatusChanged(rentalId: $id) { status } }";

pub type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a socket, authenticates with `token` and subscribes to `rental_id`'s delivery.
pub async fn subscribe(url: &str, token: &str, rental_id: &str) -> anyhow::Result<Socket> {
    let mut request = url.into_client_request()?;
    request.headers_mut().insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse()?);
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await?;
    let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } });
    socket.send(Message::Text(init.to_string().into())).await?;
    let ack = next_message(&mut socket, Duration::from_secs(30)).await?;
    anyhow::ensure!(ack["type"] == "connection_ack", "expected connection_ack, got {ack}");
    let subscribe =
        json!({ "id": "1", "type": "subscribe", "payload": { "query": TRACK, "variables": { "id": rental_id } } });
    socket.send(Message::Text(subscribe.to_string().into())).await?;
    Ok(socket)
}

/// The next protocol message other than a ping (which is answered), waiting at most `patience`.
pub async fn next_message(socket: &mut Socket, patience: Duration) -> anyhow::Result<Value> {
    loop {
        let frame =
            tokio::time::timeout(patience, socket.next()).await?.ok_or_else(|| anyhow::anyhow!("socket closed"))??;
        if let Message::Text(text) = frame {
            let message: Value = serde_json::from_str(&text)?;
            if message["type"] == "ping" {
                socket.send(Message::Text(json!({ "type": "pong" }).to_string().into())).await?;
                continue;
            }
            return Ok(message);
        }
    }
}

/// The delivery status in the next message; an error for anything but a `next` with one.
pub async fn next_status(socket: &mut Socket) -> anyhow::Result<String> {
    let message = next_message(socket, Duration::from_secs(30)).await?;
    message["payload"]["data"]["deliveryStatusChanged"]["status"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("expected a delivery status, got {message}"))
}
