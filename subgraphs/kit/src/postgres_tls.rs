//! TLS to PostgreSQL, when `POSTGRES_CA_FILE` names the CA that signs the server's
//! certificate: every connection then requires TLS (no fallback to plain text), and the
//! server must present a certificate of that CA for the host the URL names
//! (libpq's `sslmode=verify-full`). Only that CA is trusted, no built-in roots. rustls
//! with ring, as on the service port (`tls.rs`).

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use diesel::ConnectionResult;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};

/// The client side of TLS to PostgreSQL: the CA to trust.
#[derive(Clone)]
pub struct PostgresTls {
    config: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for PostgresTls {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("PostgresTls(..)")
    }
}

impl PostgresTls {
    /// Trusts the certificates in the PEM file `ca` and nothing else.
    pub fn trusting(ca: &Path) -> anyhow::Result<Self> {
        Ok(Self { config: crate::tls::client_trusting(ca)? })
    }
}

/// A connection to the database at `url`: over TLS with `tls`, plain without.
pub async fn connect(url: &str, tls: Option<&PostgresTls>) -> ConnectionResult<AsyncPgConnection> {
    let Some(tls) = tls else {
        return AsyncPgConnection::establish(url).await;
    };
    let mut config = tokio_postgres::Config::from_str(url)
        .map_err(|error| diesel::ConnectionError::InvalidConnectionUrl(error.to_string()))?;
    // Require: never the default "prefer", which would carry on in plain text with a
    // server that offers no TLS.
    config.ssl_mode(SslMode::Require);
    let (client, connection) = config.connect(tls.clone()).await.map_err(|error| {
        // tokio-postgres says only "error performing TLS handshake"; why (an unknown
        // issuer, another host's certificate) is in its sources.
        let mut message = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            message.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        diesel::ConnectionError::BadConnection(message)
    })?;
    AsyncPgConnection::try_from_client_and_connection(client, connection).await
}

impl<S> MakeTlsConnect<S> for PostgresTls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = TlsStream<S>;
    type TlsConnect = Connector;
    type Error = io::Error;

    fn make_tls_connect(&mut self, host: &str) -> Result<Connector, io::Error> {
        let name = ServerName::try_from(host.to_owned())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("{host} is not a TLS server name")))?;
        Ok(Connector { name, connector: tokio_rustls::TlsConnector::from(self.config.clone()) })
    }
}

/// One handshake, for the host the URL names.
pub struct Connector {
    name: ServerName<'static>,
    connector: tokio_rustls::TlsConnector,
}

impl<S> TlsConnect<S> for Connector
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = TlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move { Ok(TlsStream(self.connector.connect(self.name, stream).await?)) })
    }
}

/// The encrypted stream tokio-postgres reads and writes.
pub struct TlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        context: &mut TaskContext<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(context, buffer)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsStream<S> {
    fn poll_write(self: Pin<&mut Self>, context: &mut TaskContext<'_>, bytes: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(context, bytes)
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(context)
    }

    fn poll_shutdown(self: Pin<&mut Self>, context: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(context)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for TlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        // SCRAM's channel binding (SCRAM-SHA-256-PLUS) is not offered: the certificate
        // check above is what ties the connection to the server.
        ChannelBinding::none()
    }
}
