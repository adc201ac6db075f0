//! The transport of outgoing webhooks: `reqwest` over rustls, connecting only to
//! the addresses Beacon checked, following no redirect and using no proxy.

use beacon_core::{OutgoingRequest, WebhookTransport};

/// Sends deliveries with a client pinned to the checked addresses for each request.
#[derive(Debug, Default)]
pub struct HttpTransport;

#[async_trait::async_trait]
impl WebhookTransport for HttpTransport {
    async fn post(&self, req: OutgoingRequest<'_>) -> Result<u16, String> {
        let url = reqwest::Url::parse(req.url).map_err(|e| e.to_string())?;
        let host = url.host_str().unwrap_or_default().to_owned();
        // A pinned resolution: the connection goes to an address that was
        // checked, never to what a second lookup answers.
        let client = reqwest::Client::builder()
            .resolve_to_addrs(&host, req.addrs)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(req.timeout)
            .build()
            .map_err(|e| format!("client: {e}"))?;
        let mut r = client.post(url).body(req.body.to_vec());
        for (k, v) in &req.headers {
            r = r.header(*k, v);
        }
        let answer = r.send().await.map_err(|e| {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(inner) = src {
                s.push_str(": ");
                s.push_str(&inner.to_string());
                src = inner.source();
            }
            s
        })?;
        Ok(answer.status().as_u16())
    }
}
