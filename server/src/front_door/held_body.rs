//! [`HeldBody`]: a response body that counts the bytes it still holds against the
//! [`AnswerBudget`], and hands them to hyper in pieces, so that what it holds is what the peer
//! has not taken yet.
//!
//! hyper polls a body only when it has room for more: over HTTP/1 its write buffer takes at
//! most ~400 KiB (hyper's `max_buf_size`) before it waits for the socket; over HTTP/2 a stream
//! polls its next piece once the peer's flow-control window had room for the one before, and
//! holds that piece until it has. A body of one frame of 80 MB would be taken whole at the
//! first poll, into buffers no one counts; cut into [`PIECE`]s, all but what hyper's buffers
//! hold stay here, counted, until the peer reads them.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use hyper::body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::conn_limits::ClientKey;
use super::held_answers::AnswerBudget;

/// The most a body hands hyper at once. What hyper holds uncounted is two pieces an open
/// HTTP/2 stream (one waiting for the window, one in h2's send buffer; h2 counts a stream
/// against the connection's 256 until its last byte is written), so the piece is small; half
/// of HTTP/2's default largest DATA frame (RFC 9113 §4.2), so each is still one frame.
pub(crate) const PIECE: usize = 8 * 1024;

/// What one body has counted against the budget.
#[derive(Debug)]
pub(crate) struct Charge {
    budget: Arc<AnswerBudget>,
    client: Option<ClientKey>,
    counted: u64,
}

impl Charge {
    /// Nothing counted yet, for `client`.
    pub(crate) fn new(budget: Arc<AnswerBudget>, client: Option<ClientKey>) -> Self {
        Self {
            budget,
            client,
            counted: 0,
        }
    }

    /// The body now holds `held` bytes. A body of one piece or less counts nothing: hyper
    /// takes it whole at the first poll, as it takes the headers, and the budget is not
    /// touched at all on the common path (answers of a few hundred bytes).
    fn set(&mut self, held: u64) {
        let held = if held > PIECE as u64 { held } else { 0 };
        if held > self.counted {
            self.budget.hold(self.client, held - self.counted);
        } else if held < self.counted {
            self.budget.release(self.client, self.counted - held);
        }
        self.counted = held;
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.set(0);
    }
}

pin_project! {
    /// A response body counted while it is held; see the module documentation.
    #[derive(Debug)]
    pub(crate) struct HeldBody<B> {
        #[pin]
        inner: B,
        // The part of the inner body's last frame not handed to hyper yet.
        rest: Bytes,
        charge: Charge,
    }
}

impl<B: Body> HeldBody<B> {
    /// `inner`, counted under `charge` from now on.
    pub(crate) fn new(inner: B, mut charge: Charge) -> Self {
        charge.set(inner.size_hint().lower());
        Self {
            inner,
            rest: Bytes::new(),
            charge,
        }
    }
}

impl<B: Body> Body for HeldBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let mut this = self.project();
        if this.rest.is_empty() {
            match ready!(this.inner.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(mut data) => *this.rest = data.copy_to_bytes(data.remaining()),
                    Err(trailers) => {
                        this.charge.set(this.inner.size_hint().lower());
                        let trailers = trailers.map_data(|mut data| data.copy_to_bytes(0));
                        return Poll::Ready(Some(Ok(trailers)));
                    }
                },
                Some(Err(error)) => {
                    this.charge.set(0);
                    return Poll::Ready(Some(Err(error)));
                }
                None => {
                    this.charge.set(0);
                    return Poll::Ready(None);
                }
            }
        }
        let piece = if this.rest.len() > PIECE {
            this.rest.split_to(PIECE)
        } else {
            std::mem::take(this.rest)
        };
        this.charge
            .set(this.inner.size_hint().lower() + this.rest.len() as u64);
        Poll::Ready(Some(Ok(Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let inner = self.inner.size_hint();
        let rest = self.rest.len() as u64;
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower() + rest);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + rest);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::net::{IpAddr, Ipv4Addr};

    use http_body_util::Full;

    use super::*;
    use crate::front_door::held_answers::Over;

    fn client(last: u8) -> Option<ClientKey> {
        Some(ClientKey::of(IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))))
    }

    fn budget() -> Arc<AnswerBudget> {
        Arc::new(AnswerBudget::new(0, 0))
    }

    /// Polls one frame, which must be ready (the bodies here are in memory).
    fn next<B: Body + Unpin>(body: &mut B) -> Option<Frame<B::Data>>
    where
        B::Error: std::fmt::Debug,
    {
        let waker = std::task::Waker::noop();
        match Pin::new(body).poll_frame(&mut Context::from_waker(waker)) {
            Poll::Ready(frame) => frame.map(|frame| frame.unwrap()),
            Poll::Pending => panic!("an in-memory body is always ready"),
        }
    }

    #[test]
    fn a_large_answer_is_counted_until_hyper_takes_its_last_piece() {
        let budget = budget();
        let size = 5 * PIECE + 100;
        let answer = Bytes::from(vec![7_u8; size]);
        let mut body = HeldBody::new(
            Full::new(answer.clone()),
            Charge::new(budget.clone(), client(1)),
        );
        assert_eq!(
            budget.held(),
            size as u64,
            "counted from the moment it is ready"
        );
        assert_eq!(budget.admit(client(1)), Ok(()), "no limit here");
        let mut taken = Vec::new();
        while let Some(frame) = next(&mut body) {
            let data = frame.into_data().unwrap();
            assert!(data.len() <= PIECE, "a piece of {} bytes", data.len());
            taken.extend_from_slice(&data);
            let left = (size - taken.len()) as u64;
            let counted = if left > PIECE as u64 { left } else { 0 };
            assert_eq!(budget.held(), counted, "after {} bytes", taken.len());
        }
        assert_eq!(taken, answer, "every byte, in order");
        assert!(body.is_end_stream());
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn an_answer_dropped_before_it_is_taken_gives_its_bytes_back() {
        let budget = budget();
        let body = HeldBody::new(
            Full::new(Bytes::from(vec![0_u8; 3 * PIECE])),
            Charge::new(budget.clone(), client(1)),
        );
        assert_eq!(budget.held(), 3 * PIECE as u64);
        drop(body);
        assert_eq!(budget.held(), 0);
        assert_eq!(budget.admit(client(1)), Ok(()));
    }

    #[test]
    fn an_answer_of_one_piece_is_not_counted() {
        let budget = Arc::new(AnswerBudget::new(1, 1));
        let body = HeldBody::new(
            Full::new(Bytes::from(vec![0_u8; PIECE])),
            Charge::new(budget.clone(), client(1)),
        );
        assert_eq!(budget.held(), 0);
        assert_eq!(budget.admit(client(1)), Ok(()));
        drop(body);
    }

    /// A body of ready frames that does not say its size.
    struct Frames(std::vec::IntoIter<Bytes>);

    impl Body for Frames {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Ready(self.0.next().map(|data| Ok(Frame::data(data))))
        }
    }

    #[test]
    fn a_streamed_answer_is_counted_as_its_frames_arrive() {
        // Nothing is counted until a frame larger than a piece is in hand, then what is left
        // of it.
        let budget = budget();
        let frames = vec![
            Bytes::from(vec![1_u8; 10]),
            Bytes::from(vec![2_u8; 3 * PIECE]),
        ];
        let mut body = HeldBody::new(
            Frames(frames.into_iter()),
            Charge::new(budget.clone(), client(1)),
        );
        assert_eq!(budget.held(), 0);
        assert_eq!(next(&mut body).unwrap().into_data().unwrap().len(), 10);
        assert_eq!(budget.held(), 0);
        assert_eq!(next(&mut body).unwrap().into_data().unwrap().len(), PIECE);
        assert_eq!(budget.held(), 2 * PIECE as u64);
        drop(body);
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn a_client_over_its_budget_is_refused_and_others_are_not() {
        let budget = Arc::new(AnswerBudget::new(0, 4 * PIECE as u64));
        let body = HeldBody::new(
            Full::new(Bytes::from(vec![0_u8; 4 * PIECE])),
            Charge::new(budget.clone(), client(1)),
        );
        assert_eq!(budget.admit(client(1)), Err(Over::Client));
        assert_eq!(budget.admit(client(2)), Ok(()));
        assert_eq!(
            budget.admit(None),
            Ok(()),
            "no client: only the global budget"
        );
        drop(body);
        assert_eq!(budget.admit(client(1)), Ok(()));
    }

    #[test]
    fn all_clients_together_over_the_global_budget_are_refused() {
        let budget = Arc::new(AnswerBudget::new(5 * PIECE as u64, 0));
        let first = HeldBody::new(
            Full::new(Bytes::from(vec![0_u8; 3 * PIECE])),
            Charge::new(budget.clone(), client(1)),
        );
        assert_eq!(budget.admit(client(2)), Ok(()));
        let second = HeldBody::new(
            Full::new(Bytes::from(vec![0_u8; 2 * PIECE])),
            Charge::new(budget.clone(), None),
        );
        for anyone in [client(1), client(2), None] {
            assert_eq!(budget.admit(anyone), Err(Over::Server));
        }
        drop(first);
        assert_eq!(budget.admit(client(2)), Ok(()));
        drop(second);
    }
}
