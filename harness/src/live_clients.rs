//! Real subscription clients for tests and benchmarks: graphql-transport-ws over
//! WebSocket, and SSE.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub struct WsClient {
    socket: Socket,
}

impl WsClient {
    /// Connects and initialises with `token` in the `connection_init` payload.
    pub async fn connect(url: &str, token: Option<&str>) -> Self {
        let mut request = url.into_client_request().expect("ws url");
        request.headers_mut().insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse().expect("header"));
        let (mut socket, _) = tokio_tungstenite::connect_async(request).await.expect("ws connects");
        let payload = match token {
            Some(token) => json!({ "Authorization": format!("Bearer {token}") }),
            None => json!({}),
        };
        socket
            .send(Message::Text(json!({ "type": "connection_init", "payload": payload }).to_string().into()))
            .await
            .expect("init sent");
        let mut client = Self { socket };
        let ack = client.next_message().await.expect("an answer to connection_init");
        assert_eq!(ack["type"], "connection_ack", "{ack}");
        client
    }

    pub async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        let message = json!({ "id": id, "type": "subscribe", "payload": { "query": query, "variables": variables } });
        self.socket.send(Message::Text(message.to_string().into())).await.expect("subscribe sent");
    }

    /// The next graphql-transport-ws message (pings answered on the way), or `None` if
    /// the socket closed or nothing came within 20 s.
    pub async fn next_message(&mut self) -> Option<Value> {
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(20), self.socket.next()).await.ok()??.ok()?;
            match frame {
                Message::Text(text) => {
                    let message: Value = serde_json::from_str(&text).expect("JSON message");
                    if message["type"] == "ping" {
                        let _ = self.socket.send(Message::Text(json!({ "type": "pong" }).to_string().into())).await;
                        continue;
                    }
                    return Some(message);
                }
                Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }
}

/// A subscription over Server-Sent Events: the events' JSON payloads, in order.
pub struct SseClient {
    response: reqwest::Response,
    buffer: String,
}

impl SseClient {
    pub async fn subscribe(client: &reqwest::Client, url: &str, token: &str, query: &str, variables: Value) -> Self {
        let response = client
            .post(url)
            .bearer_auth(token)
            .header("Accept", "text/event-stream")
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .expect("SSE request");
        assert!(response.status().is_success(), "SSE status {}", response.status());
        Self { response, buffer: String::new() }
    }

    /// The next `next` event's data, or `None` when the stream completes or stalls.
    pub async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let event: String = self.buffer.drain(..end + 2).collect();
                let mut kind = "";
                let mut data = String::new();
                for line in event.lines() {
                    if let Some(value) = line.strip_prefix("event:") {
                        kind = value.trim();
                    } else if let Some(value) = line.strip_prefix("data:") {
                        data.push_str(value.trim());
                    }
                }
                match kind {
                    "next" => return Some(serde_json::from_str(&data).expect("JSON event")),
                    "complete" => return None,
                    _ => continue,
                }
            }
            let chunk = tokio::time::timeout(Duration::from_secs(20), self.response.chunk()).await.ok()?.ok()??;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}
