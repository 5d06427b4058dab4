//! [`HeldBody`]: a response body whose bytes are counted against the [`AnswerBudget`] for as
//! long as they are in memory, wherever they are.
//!
//! An answer is counted from the moment it is ready (by its size hint), and each of its data
//! frames from the moment hyper takes it until the last byte of it is freed. hyper does not
//! free a frame when it takes it: it queues it, whole or in slices, in its HTTP/1 write buffer
//! or an HTTP/2 stream's send buffer, until the peer has read all of it, and any slice of a
//! buffer keeps the whole buffer alive. So a frame hyper takes becomes a `Bytes` whose owner
//! carries the count ([`Bytes::from_owner`]): the bytes are released when the last slice of
//! them is dropped, however the peer reads (a window one byte short of the answer leaves the
//! answer counted, as it leaves it in memory).

use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use hyper::body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::held_answers::AnswerBudget;

/// Answers and frames of at most this many bytes are not counted: the common answer (a few
/// hundred bytes) never touches the budget's lock. What they hold is bounded by the streams
/// and connections a client may have (HTTP/2: 256 streams a connection).
pub(crate) const COUNTED_ABOVE: usize = 4 * 1024;

/// Bytes counted against the budget for one client, given back when dropped.
#[derive(Debug)]
pub(crate) struct Charge {
    budget: &'static AnswerBudget,
    client: Option<IpAddr>,
    counted: u64,
}

impl Charge {
    /// Nothing counted yet, for `client`.
    pub(crate) fn new(budget: &'static AnswerBudget, client: Option<IpAddr>) -> Self {
        Self {
            budget,
            client,
            counted: 0,
        }
    }

    /// Counts `held` bytes from now on (nothing if that is [`COUNTED_ABOVE`] or less).
    #[inline]
    fn set(&mut self, held: u64) {
        let held = if held > COUNTED_ABOVE as u64 { held } else { 0 };
        if held != self.counted {
            self.recount(held);
        }
    }

    /// [`Charge::set`] when the count changes: off the common path (an answer too small to
    /// count), which is then a comparison.
    #[cold]
    fn recount(&mut self, held: u64) {
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

/// The owner of a counted frame's bytes: the frame and its charge, dropped together when the
/// last slice of the frame is.
struct CountedFrame {
    data: Bytes,
    _charge: Charge,
}

impl AsRef<[u8]> for CountedFrame {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

pin_project! {
    /// A response body counted while any of it is in memory; see the module documentation.
    #[derive(Debug)]
    pub(crate) struct HeldBody<B> {
        #[pin]
        inner: B,
        // What the inner body has not handed over yet.
        ahead: Charge,
    }
}

impl<B: Body> HeldBody<B> {
    /// `inner`, counted from now on under `ahead`'s budget and client.
    pub(crate) fn new(inner: B, mut ahead: Charge) -> Self {
        ahead.set(inner.size_hint().lower());
        Self { inner, ahead }
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
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        let (budget, client) = (this.ahead.budget, this.ahead.client);
        let mut ahead_counted = this.ahead.counted;
        // The frame's own count starts before the count ahead of it shrinks: the client's total
        // never dips while the bytes are still here.
        let frame = frame.map(|frame| {
            frame.map(|frame| {
                frame.map_data(|mut data| {
                    let data = data.copy_to_bytes(data.remaining());
                    if data.len() <= COUNTED_ABOVE {
                        return data;
                    }
                    let mut charge = Charge::new(budget, client);
                    // The count ahead already holds these bytes when the body said its size:
                    // they move to the frame's count without a trip to the budget.
                    let moved = ahead_counted.min(data.len() as u64);
                    ahead_counted -= moved;
                    charge.counted = moved;
                    charge.set(data.len() as u64);
                    Bytes::from_owner(CountedFrame {
                        data,
                        _charge: charge,
                    })
                })
            })
        });
        this.ahead.counted = ahead_counted;
        this.ahead.set(this.inner.size_hint().lower());
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::net::Ipv4Addr;

    use http_body_util::Full;

    use super::*;

    fn client(last: u8) -> Option<IpAddr> {
        Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)))
    }

    fn budget() -> &'static AnswerBudget {
        Box::leak(Box::new(AnswerBudget::new(0, 0)))
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
    fn an_answer_is_counted_until_the_last_slice_of_it_is_dropped() {
        let budget = budget();
        let size = 100_000;
        let answer = Bytes::from(vec![7_u8; size]);
        let mut body = HeldBody::new(Full::new(answer.clone()), Charge::new(budget, client(1)));
        assert_eq!(
            budget.held(),
            size as u64,
            "counted from the moment it is ready"
        );
        let mut data = next(&mut body).unwrap().into_data().unwrap();
        assert!(next(&mut body).is_none());
        drop(body);
        assert_eq!(data, answer, "every byte, in order");
        assert_eq!(budget.held(), size as u64, "still in memory: still counted");
        // hyper writes a frame in slices as the peer reads; one byte left keeps all of it.
        let last = data.split_off(size - 1);
        drop(data);
        assert_eq!(budget.held(), size as u64);
        drop(last);
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn an_answer_dropped_before_it_is_taken_gives_its_bytes_back() {
        let budget = budget();
        let body = HeldBody::new(
            Full::new(Bytes::from(vec![0_u8; 3 * COUNTED_ABOVE])),
            Charge::new(budget, client(1)),
        );
        assert_eq!(budget.held(), 3 * COUNTED_ABOVE as u64);
        drop(body);
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn small_answers_are_not_counted() {
        let budget = budget();
        let mut body = HeldBody::new(
            Full::new(Bytes::from(vec![0_u8; COUNTED_ABOVE])),
            Charge::new(budget, client(1)),
        );
        assert_eq!(budget.held(), 0);
        let data = next(&mut body).unwrap().into_data().unwrap();
        assert_eq!((data.len(), budget.held()), (COUNTED_ABOVE, 0));
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
    fn a_streamed_answer_is_counted_frame_by_frame() {
        let budget = budget();
        let big = 3 * COUNTED_ABOVE;
        let frames = vec![Bytes::from(vec![1_u8; 10]), Bytes::from(vec![2_u8; big])];
        let mut body = HeldBody::new(Frames(frames.into_iter()), Charge::new(budget, client(1)));
        assert_eq!(budget.held(), 0, "its size is unknown");
        let small = next(&mut body).unwrap().into_data().unwrap();
        assert_eq!((small.len(), budget.held()), (10, 0));
        let large = next(&mut body).unwrap().into_data().unwrap();
        assert_eq!((large.len(), budget.held()), (big, big as u64));
        drop(body);
        assert_eq!(budget.held(), big as u64);
        drop(large);
        assert_eq!(budget.held(), 0);
    }
}
