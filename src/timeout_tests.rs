//! Tests of [`super`]: the deadline's race with the write.

use super::*;

/// A deadline of `limit` for an HTTP/1.1 request with fresh ids.
fn deadline_of(limit: Duration) -> WriteDeadline {
    WriteDeadline::new(limit, RequestIds::generate(None), http::Version::HTTP_11)
}

/// The deadline runs on tokio's clock from the request's arrival, also when that clock is
/// paused and ahead of the real one: a request answered within the limit is answered,
/// one that is not gets 408 exactly at the limit, not earlier nor later.
#[tokio::test(start_paused = true)]
async fn the_deadline_is_kept_on_tokios_clock() {
    use tower::{ServiceExt, service_fn};
    // Tokio's clock a minute ahead of the real one.
    tokio::time::sleep(Duration::from_secs(60)).await;
    let taking = |secs| {
        TimeoutLayer::new(Duration::from_secs(30)).layer(service_fn(
            move |_: Request<()>| async move {
                tokio::time::sleep(Duration::from_secs(secs)).await;
                Ok::<_, std::convert::Infallible>(Response::new(String::new()))
            },
        ))
    };
    let started = tokio::time::Instant::now();
    let answered = taking(29).oneshot(Request::new(())).await.unwrap();
    assert_eq!(answered.status(), 200);
    assert_eq!(started.elapsed(), Duration::from_secs(29));
    let started = tokio::time::Instant::now();
    let timed_out = taking(31).oneshot(Request::new(())).await.unwrap();
    assert_eq!(timed_out.status(), http::StatusCode::REQUEST_TIMEOUT);
    assert_eq!(started.elapsed(), Duration::from_secs(30));
}

/// A limit too long for the clock is a deadline far away, not a panic.
#[tokio::test]
async fn a_limit_past_the_clock_is_far_away() {
    let deadline = deadline_of(Duration::MAX);
    assert!(deadline.shared.at > tokio::time::Instant::now() + Duration::from_secs(86_400 * 365));
    assert!(deadline.begin_write(false).is_ok());
}

/// The deadline keeps the request's ids for its 408, but printing the deadline (an
/// extension someone logs) shows the deadline only, not the client's ids.
#[tokio::test]
async fn a_deadline_prints_without_the_requests_ids() {
    let client_id = http::HeaderValue::from_static("client-chosen-id-0123");
    let deadline = WriteDeadline::new(
        Duration::from_secs(30),
        RequestIds::generate(Some(client_id)),
        http::Version::HTTP_11,
    );
    let printed = format!("{deadline:?}");
    assert!(printed.starts_with("WriteDeadline {"), "{printed}");
    assert!(printed.contains("limit: 30s"), "{printed}");
    assert!(!printed.contains("client-chosen-id-0123"), "{printed}");
}

#[test]
fn a_write_that_claims_first_is_never_timed_out() {
    let deadline = deadline_of(Duration::from_secs(1));
    assert!(deadline.begin_write(false).is_ok());
    assert!(
        !deadline.expire(),
        "the deadline must yield to a started write"
    );
    assert!(
        deadline.begin_write(true).is_ok(),
        "retries of a started write go on"
    );
}

/// Past the limit, a write does not start even if the deadline's timer has not fired
/// (it is made on the request's first wait, which may come late), and the deadline is
/// then taken: the request is timed out.
#[tokio::test(start_paused = true)]
async fn a_write_after_the_limit_never_starts_before_the_timer_fires() {
    let deadline = deadline_of(Duration::from_secs(30));
    tokio::time::advance(Duration::from_secs(29)).await;
    assert!(deadline.check().is_ok());
    tokio::time::advance(Duration::from_secs(1)).await;
    let error = deadline.begin_write(false).unwrap_err();
    assert_eq!(error.status(), http::StatusCode::REQUEST_TIMEOUT);
    assert!(deadline.check().is_err(), "the request is timed out");
}

/// A write that took the deadline itself (the limit ran out before the timer fired) does
/// not stop the layer from answering 408 for the rest of the request, which still waits.
#[tokio::test(start_paused = true)]
async fn a_deadline_taken_by_a_late_write_still_bounds_the_request() {
    use tower::{ServiceExt, service_fn};
    let mut service = TimeoutLayer::new(Duration::from_secs(30)).layer(service_fn(
        |request: Request<()>| async move {
            let deadline = request.extensions().get::<WriteDeadline>().unwrap();
            assert!(deadline.begin_write(false).is_err(), "too late to write");
            // The rest of the request (a batch's read, say) waits for its store.
            std::future::pending::<()>().await;
            Ok::<_, std::convert::Infallible>(Response::new(String::new()))
        },
    ));
    // Called now; first polled at the limit.
    let response = service.ready().await.unwrap().call(Request::new(()));
    tokio::time::advance(Duration::from_secs(30)).await;
    let answered = tokio::time::timeout(Duration::from_secs(3600), response)
        .await
        .expect("the layer answers")
        .unwrap();
    assert_eq!(answered.status(), http::StatusCode::REQUEST_TIMEOUT);
}

/// A request whose write claimed the deadline before the request first waited gets no timer:
/// the deadline could no longer answer, so nothing wakes the request as the limit passes,
/// and it is answered by its write, once the write ends.
#[tokio::test(start_paused = true)]
async fn a_write_started_before_the_first_wait_makes_no_timer() {
    use std::sync::atomic::AtomicUsize;
    use std::task::{Wake, Waker};
    use tower::{ServiceExt, service_fn};

    #[derive(Default)]
    struct Wakes(AtomicUsize);
    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    let (commit, committed) = tokio::sync::oneshot::channel::<()>();
    let mut committed = Some(committed);
    let mut service =
        TimeoutLayer::new(Duration::from_secs(30)).layer(service_fn(move |request: Request<()>| {
            let committed = committed.take().expect("one request");
            async move {
                let deadline = request.extensions().get::<WriteDeadline>().unwrap();
                deadline.begin_write(false).unwrap();
                // The store's commit.
                committed.await.unwrap();
                Ok::<_, std::convert::Infallible>(Response::new(String::new()))
            }
        }));
    let mut response = std::pin::pin!(service.ready().await.unwrap().call(Request::new(())));
    let wakes = Arc::new(Wakes::default());
    let waker = Waker::from(wakes.clone());
    let mut cx = Context::from_waker(&waker);
    assert!(
        response.as_mut().poll(&mut cx).is_pending(),
        "the write waits"
    );

    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(
        wakes.0.load(Ordering::SeqCst),
        0,
        "no timer woke the request"
    );

    commit.send(()).unwrap();
    assert_eq!(wakes.0.load(Ordering::SeqCst), 1, "the commit woke it");
    match response.poll(&mut cx) {
        Poll::Ready(Ok(answered)) => assert_eq!(answered.status(), 200, "the write's answer"),
        other => panic!("not answered: {:?}", other.map(|r| r.map(|r| r.status()))),
    }
}

#[test]
fn a_write_after_the_deadline_never_starts() {
    let deadline = deadline_of(Duration::from_secs(1));
    assert!(deadline.expire());
    let error = deadline.begin_write(false).unwrap_err();
    assert_eq!(error.status(), http::StatusCode::REQUEST_TIMEOUT);
}

#[tokio::test(start_paused = true)]
async fn a_second_write_of_the_request_does_not_start_after_the_limit() {
    let deadline = deadline_of(Duration::from_secs(1));
    // The first write claims the request (its deadline then never answers 408)...
    assert!(deadline.begin_write(false).is_ok());
    assert!(
        deadline.begin_write(false).is_ok(),
        "another, within the limit"
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    // ...but another write of the same request (a batch's next PATCH) may not start late.
    let error = deadline.begin_write(false).unwrap_err();
    assert_eq!(error.status(), http::StatusCode::REQUEST_TIMEOUT);
    assert!(
        deadline.begin_write(true).is_ok(),
        "the started one finishes"
    );
}

/// A 408 closes an HTTP/1 connection whether or not the request declared a body (it may come
/// mid-body; `crate::refusal`); HTTP/2 has no such header.
#[tokio::test(start_paused = true)]
async fn a_408_closes_an_http1_connection_even_without_a_body() {
    use tower::{Layer, ServiceExt};
    for (version, closes) in [
        (http::Version::HTTP_11, true),
        (http::Version::HTTP_2, false),
    ] {
        let never = tower::service_fn(|_: Request<()>| async {
            std::future::pending::<Result<Response<String>, std::convert::Infallible>>().await
        });
        let app = TimeoutLayer::new(Duration::from_secs(30)).layer(never);
        let request = Request::get("/me/security")
            .version(version)
            .body(())
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        assert_eq!(response.status(), http::StatusCode::REQUEST_TIMEOUT);
        let connection = response.headers().get(http::header::CONNECTION);
        assert_eq!(
            connection.is_some_and(|value| value == "close"),
            closes,
            "{version:?}"
        );
    }
}
