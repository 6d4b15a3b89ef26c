//! A fake API server for the client tests: a tower mock service that
//! records every request (method, path and query, body) and answers from a
//! function of the request.

use std::sync::{Arc, Mutex};

use http::{Request, Response};
use kube::client::Body;

/// One recorded request.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub body: String,
}

/// What the fake answers: status and JSON body, or `None` to never answer.
pub type Answer = Option<(u16, serde_json::Value)>;

/// A client whose requests go to `answer`; the log of requests.
pub fn client(
    answer: impl Fn(&Seen) -> Answer + Send + 'static,
) -> (kube::Client, Arc<Mutex<Vec<Seen>>>) {
    let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = log.clone();
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let method = req.method().to_string();
            let uri = req.uri().to_string();
            let body = req
                .into_body()
                .collect_bytes()
                .await
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            let seen = Seen { method, uri, body };
            l.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(seen.clone());
            match answer(&seen) {
                Some((code, json)) => send.send_response(
                    Response::builder()
                        .status(code)
                        .header("content-type", "application/json")
                        .body(Body::from(json.to_string().into_bytes()))
                        .unwrap_or_else(|_| Response::new(Body::from(Vec::new()))),
                ),
                // Never answered: the request hangs until the caller's
                // timeout (the handle keeps `send` alive).
                None => {
                    std::mem::forget(send);
                }
            }
        }
    });
    (kube::Client::new(svc, "default"), log)
}

/// A Kubernetes `Status` error body.
pub fn status(code: u16, reason: &str, message: &str) -> serde_json::Value {
    serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code
    })
}

/// Echoes the request body back (what a create answers).
pub fn echo(seen: &Seen) -> serde_json::Value {
    serde_json::from_str(&seen.body).unwrap_or_else(|_| serde_json::json!({}))
}
