//! The client's request body, drained when the proxy stops reading it
//! early, so that a refusal reaches the client instead of a reset.
//!
//! When the proxy answers before the body has arrived (DLP stopped it,
//! policy refused the request, the upstream failed), closing the
//! connection with unread bytes in the socket makes the kernel send a
//! reset, which destroys the answer in flight: clients report `EPIPE` or a
//! TLS EOF and the agent never learns why. [`ClientBody`] instead hands
//! the rest of the body to a task that reads and discards it — at most
//! [`DRAIN_MAX_BYTES`] and for at most [`DRAIN_MAX_TIME`] — while the
//! answer is written; hyper then reuses or closes the connection cleanly.
//! A body the client has not started sending (it waits for
//! `100 Continue`) is not asked for: the final answer tells it not to.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;

/// Most bytes read and discarded after the proxy has answered.
pub const DRAIN_MAX_BYTES: u64 = 64 << 20;
/// Longest time spent discarding after the proxy has answered.
pub const DRAIN_MAX_TIME: Duration = Duration::from_secs(30);

/// A request body as it arrives from the client; see the module docs.
#[derive(Debug)]
pub struct ClientBody {
    inner: Option<Incoming>,
    /// The client announced `Expect: 100-continue`.
    expects_continue: bool,
    /// The proxy has asked for the body (so hyper sent `100 Continue`).
    polled: bool,
    ended: bool,
}

impl ClientBody {
    pub fn new(inner: Incoming, expects_continue: bool) -> Self {
        Self {
            inner: Some(inner),
            expects_continue,
            polled: false,
            ended: false,
        }
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        this.polled = true;
        let r = Pin::new(inner).poll_frame(cx);
        if matches!(r, Poll::Ready(None | Some(Err(_)))) {
            this.ended = true;
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

impl Drop for ClientBody {
    fn drop(&mut self) {
        let Some(inner) = self.inner.take() else {
            return;
        };
        let waiting_for_continue = self.expects_continue && !self.polled;
        if self.ended || inner.is_end_stream() || waiting_for_continue {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(discard(inner));
        }
    }
}

async fn discard(mut body: Incoming) {
    let mut read = 0u64;
    let _ = tokio::time::timeout(DRAIN_MAX_TIME, async {
        while let Some(Ok(frame)) = body.frame().await {
            read += frame.data_ref().map_or(0, |d| d.len() as u64);
            if read > DRAIN_MAX_BYTES {
                break;
            }
        }
    })
    .await;
    tracing::debug!(
        bytes = read,
        "discarded the rest of a request body after answering"
    );
}
