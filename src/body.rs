//! The one response body type: a fixed page of our own, or the upstream's body streamed through.
//!
//! An enum rather than a boxed trait object keeps the proxy's hot path free of an allocation per response.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;

/// Why a response body stopped short.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    #[error(transparent)]
    Hyper(#[from] hyper::Error),
    #[error(transparent)]
    Upstream(#[from] crate::h1::H1Error),
}

#[derive(Debug)]
pub enum Body {
    Empty,
    Full(Option<Bytes>),
    Upstream(Incoming),
    /// The forum's body on a connection of the worker's own pool.
    Driven(crate::pool::DrivenBody),
}

impl Body {
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        Body::Full(Some(bytes.into()))
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            Body::Empty => Poll::Ready(None),
            Body::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Body::Upstream(incoming) => Pin::new(incoming).poll_frame(cx).map_err(BodyError::from),
            Body::Driven(driven) => Pin::new(driven).poll_frame(cx).map_err(BodyError::from),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Empty | Body::Full(None) => true,
            Body::Full(Some(_)) => false,
            Body::Upstream(incoming) => incoming.is_end_stream(),
            Body::Driven(driven) => driven.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Empty | Body::Full(None) => SizeHint::with_exact(0),
            Body::Full(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            Body::Upstream(incoming) => incoming.size_hint(),
            Body::Driven(driven) => driven.size_hint(),
        }
    }
}
