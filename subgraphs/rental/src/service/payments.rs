//! The rental service's client for the payment service: direct service-to-service
//! GraphQL calls with a service token, a timeout, and a circuit breaker, so a slow or
//! dead payment service makes `rent` fail fast instead of piling up requests.

use std::sync::LazyLock;
use std::time::Duration;

use contracts::CardNumber;
use prometheus::IntGaugeVec;
use serde_json::{Value, json};
use subgraph_kit::{ApiError, ErrorCode, Identity, TokenIssuer};
use uuid::Uuid;

use super::breaker::{BreakerConfig, CircuitBreaker};

/// `water_payment_breaker_open{service}`: 1 while the breaker is open or half-open.
static BREAKER_OPEN: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    subgraph_kit::metrics::gauge(
        "water_payment_breaker_open",
        "1 while the circuit breaker in front of payment is open or half-open.",
        &["service"],
    )
});

/// Where payment is and how patient to be with it (read by `app::Config`).
#[derive(Debug, Clone)]
pub struct PaymentSettings {
    /// The payment subgraph's GraphQL URL (reached directly, not through the router).
    pub url: String,
    /// How long one call may take before it counts as a failure.
    pub timeout: Duration,
    pub breaker: BreakerConfig,
    /// Rental's own key: it signs the token of each call, which payment checks against
    /// the public half (its `SERVICE_CALLERS_JWKS`). No user token can call payment's
    /// charges, and no other service can sign as rental.
    pub credential: TokenIssuer,
    /// The CA that signs payment's certificate (`PAYMENT_CA_FILE`), for an `https` URL:
    /// rental trusts it and nothing else, so the card numbers it sends go to payment.
    pub ca_file: Option<std::path::PathBuf>,
}

/// What payment said to a charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeOutcome {
    Charged {
        payment_id: Uuid,
    },
    /// Payment answered and refused (declined card, bad input, a voided rental):
    /// nothing was charged. The error is the one to show.
    Refused(ApiError),
}

/// How long a client should wait after a failed call before trying again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(2);

pub struct PaymentClient {
    http: reqwest::Client,
    settings: PaymentSettings,
    issuer: TokenIssuer,
    breaker: CircuitBreaker,
}

impl PaymentClient {
    /// Fails when the URL and the CA do not go together: `https` needs `PAYMENT_CA_FILE`
    /// (no built-in roots are trusted), and a CA with a plain `http` URL would protect
    /// nothing.
    pub fn new(settings: PaymentSettings) -> anyhow::Result<Self> {
        let https = settings.url.starts_with("https://");
        let http = match (&settings.ca_file, https) {
            (Some(ca_file), true) => {
                let mut builder = reqwest::Client::builder().tls_built_in_root_certs(false);
                for certificate in subgraph_kit::tls::read_certificates(ca_file)? {
                    builder = builder.add_root_certificate(reqwest::Certificate::from_der(&certificate)?);
                }
                builder.build()?
            }
            (None, false) => reqwest::Client::new(),
            (None, true) => anyhow::bail!(
                "PAYMENT_URL={} is https: set PAYMENT_CA_FILE to the CA that signs payment's certificate",
                settings.url
            ),
            (Some(ca_file), false) => anyhow::bail!(
                "PAYMENT_CA_FILE={} is set but PAYMENT_URL={} is plain http: use https",
                ca_file.display(),
                settings.url
            ),
        };
        Ok(Self {
            http,
            breaker: CircuitBreaker::new(settings.breaker),
            issuer: settings.credential.for_audience(crate::SERVICE, "payment"),
            settings,
        })
    }

    /// Fails at once while the breaker is open, before anything is written.
    pub fn check_available(&self) -> Result<(), ApiError> {
        self.breaker.peek().map_err(|refused| ApiError::payment_unavailable(refused.retry_after))
    }

    /// Keeps `water_payment_breaker_open` in step with the breaker.
    fn report_breaker(&self) {
        BREAKER_OPEN.with_label_values(&[crate::SERVICE]).set(i64::from(self.breaker.is_open()));
    }

    pub async fn charge(
        &self,
        rental_id: Uuid,
        customer_id: Uuid,
        amount: i32,
        card: &CardNumber,
        expiry: Option<(i32, i32)>,
    ) -> Result<ChargeOutcome, ApiError> {
        let query = "mutation($input: ChargeRentalInput!) { chargeRental(input: $input) { id } }";
        let variables = json!({ "input": {
            "rentalId": rental_id,
            "customerId": customer_id,
            "amount": amount,
            "cardNumber": card.digits(),
            "expMonth": expiry.map(|(month, _)| month),
            "expYear": expiry.map(|(_, year)| year),
        }});
        let response = self.call(query, variables).await?;
        if let Some(id) = response.pointer("/data/chargeRental/id").and_then(Value::as_str) {
            let payment_id = id.parse().map_err(|_| ApiError::internal("payment returned a malformed payment id"))?;
            return Ok(ChargeOutcome::Charged { payment_id });
        }
        Ok(ChargeOutcome::Refused(first_error(&response)))
    }

    /// Calls off the charge of `rental_id` (refund, or never charge). Idempotent.
    pub async fn void(&self, rental_id: Uuid) -> Result<(), ApiError> {
        let query = "mutation($id: ID!) { voidRentalCharge(rentalId: $id) { id } }";
        let response = self.call(query, json!({ "id": rental_id })).await?;
        match response.get("errors") {
            None => Ok(()),
            Some(_) => Err(first_error(&response)),
        }
    }

    /// One call through the breaker. Transport failures, timeouts, 5xx answers and
    /// internal errors count against the breaker; answers payment meant (a decline, a
    /// validation error) do not.
    async fn call(&self, query: &str, variables: Value) -> Result<Value, ApiError> {
        let permit = self.breaker.admit().map_err(|refused| {
            self.report_breaker();
            ApiError::payment_unavailable(refused.retry_after)
        })?;
        let token = self.issuer.issue(&Identity::Service { name: crate::SERVICE.into() }, Duration::from_secs(60));
        // The timeout covers the whole exchange, body included.
        let exchange = async {
            // Payment continues this request's trace.
            let mut headers = reqwest::header::HeaderMap::new();
            subgraph_kit::telemetry::inject(&mut headers);
            let response = self
                .http
                .post(&self.settings.url)
                .bearer_auth(token)
                .headers(headers)
                .json(&json!({ "query": query, "variables": variables }))
                .send()
                .await?;
            if !response.status().is_success() {
                tracing::warn!(status = %response.status(), "payment answered with an error status");
                return Ok(None);
            }
            response.json::<Value>().await.map(Some)
        };
        let exchange =
            tracing::Instrument::instrument(exchange, tracing::info_span!("call payment", otel.kind = "client"));
        let answer = match tokio::time::timeout(self.settings.timeout, exchange).await {
            Ok(Ok(body)) => body,
            Ok(Err(error)) => {
                tracing::warn!(%error, "payment could not be reached");
                None
            }
            Err(_) => {
                tracing::warn!(timeout = ?self.settings.timeout, "payment did not answer in time");
                None
            }
        };
        // Payment's own failures count against it: its internal errors, and its
        // database being out of reach.
        let failed_inside = answer.as_ref().is_some_and(|body| {
            matches!(error_code(body), Some(code) if code == ErrorCode::Internal.as_str() || code == ErrorCode::ServiceUnavailable.as_str())
        });
        let outcome = match answer {
            Some(body) if !failed_inside => {
                self.breaker.record(permit, true);
                Ok(body)
            }
            _ => {
                self.breaker.record(permit, false);
                Err(ApiError::payment_unavailable(RETRY_AFTER_FAILURE))
            }
        };
        self.report_breaker();
        outcome
    }
}

fn error_code(response: &Value) -> Option<&str> {
    response.pointer("/errors/0/extensions/code").and_then(Value::as_str)
}

/// Payment's first error, with its code, as ours to return.
fn first_error(response: &Value) -> ApiError {
    let message = response.pointer("/errors/0/message").and_then(Value::as_str).unwrap_or("payment refused the charge");
    let code = match error_code(response) {
        Some("PAYMENT_DECLINED") => ErrorCode::PaymentDeclined,
        Some("BAD_USER_INPUT") => ErrorCode::BadUserInput,
        Some("CONFLICT") => ErrorCode::Conflict,
        _ => return ApiError::internal(format!("unexpected answer from payment: {response}")),
    };
    ApiError::new(code, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str, ca_file: Option<&str>) -> PaymentSettings {
        PaymentSettings {
            url: url.into(),
            timeout: Duration::from_secs(1),
            breaker: BreakerConfig { failure_threshold: 1, open_for: Duration::from_secs(1) },
            credential: TokenIssuer::generate(crate::SERVICE, "payment"),
            ca_file: ca_file.map(Into::into),
        }
    }

    #[test]
    fn an_https_url_needs_a_ca_and_a_ca_needs_an_https_url() {
        let error = PaymentClient::new(settings("https://payment:4003/graphql", None)).err().expect("refused");
        assert!(error.to_string().contains("set PAYMENT_CA_FILE"), "{error}");
        let error =
            PaymentClient::new(settings("http://payment:4003/graphql", Some("/ca.pem"))).err().expect("refused");
        assert!(error.to_string().contains("plain http: use https"), "{error}");
        let error = PaymentClient::new(settings("https://payment:4003/graphql", Some("/nonexistent/ca.pem")))
            .err()
            .expect("refused");
        assert!(format!("{error:#}").contains("/nonexistent/ca.pem"), "{error:#}");
        assert!(PaymentClient::new(settings("http://payment:4003/graphql", None)).is_ok());
    }
}
