//! Tests of the held-answer budget and its service.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::*;

fn v4(last: u8) -> Option<IpAddr> {
    Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)))
}

#[test]
fn a_client_over_its_budget_is_refused_and_others_are_not() {
    let budget = AnswerBudget::new(0, 1000);
    budget.hold(v4(1), 1000);
    assert_eq!(budget.admit(v4(1)), Err(Over::Client));
    assert_eq!(budget.admit(v4(2)), Ok(()));
    assert_eq!(
        budget.admit(None),
        Ok(()),
        "no client: only the server's budget"
    );
    budget.release(v4(1), 1);
    assert_eq!(budget.admit(v4(1)), Ok(()));
}

#[test]
fn an_ipv6_client_is_its_48_and_a_mapped_address_its_ipv4_one() {
    let budget = AnswerBudget::new(0, 1000);
    let v6 =
        |subnet: u16, host: u16| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, subnet, 0, 0, 0, host));
    budget.hold(Some(v6(2, 1)), 1000);
    // Another /64 of the same /48 is the same client.
    assert_eq!(budget.admit(Some(v6(0xffff, 9))), Err(Over::Client));
    let other = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 2, 2, 0, 0, 0, 1));
    assert_eq!(budget.admit(Some(other)), Ok(()));
    budget.hold(v4(7), 1000);
    let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped());
    assert_eq!(budget.admit(Some(mapped)), Err(Over::Client));
    assert_eq!(budget.held_by(mapped), (1000, 2));
}

#[test]
fn a_client_whose_answers_are_gone_holds_nothing_and_is_no_holder() {
    let budget = AnswerBudget::new(0, 0);
    budget.hold(v4(1), 300);
    budget.hold(v4(1), 200);
    budget.hold(v4(2), 100);
    assert_eq!(budget.held_by(v4(1).unwrap()), (500, 2));
    budget.release(v4(1), 500);
    assert_eq!(budget.held_by(v4(1).unwrap()), (0, 1), "its entry is gone");
    budget.release(v4(2), 100);
    assert_eq!((budget.held(), budget.held_by(v4(2).unwrap())), (0, (0, 0)));
}

#[test]
fn many_small_holders_do_not_shrink_a_share_below_a_sixteenth_of_what_one_may_hold() {
    let budget = AnswerBudget::new(1000, 320);
    // 200 holders of 3 bytes each past half: an even share would be 2 bytes.
    for last in 0..200 {
        budget.hold(v4(last), 3);
    }
    budget.hold(v4(250), 19);
    assert_eq!(budget.admit(v4(250)), Ok(()), "19 is under 320 / 16");
    budget.hold(v4(250), 1);
    assert_eq!(budget.admit(v4(250)), Err(Over::Server));
}

/// The client is the request's `ClientAddress` (on a trusted proxy's connection, the client
/// it names; `client_address.rs`); a request refused is not run.
#[tokio::test]
async fn answers_are_counted_for_the_client_address_the_request_carries() {
    use tower::ServiceExt;
    let budget: &'static AnswerBudget = Box::leak(Box::new(AnswerBudget::new(0, 10_000)));
    let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = runs.clone();
    let inner = tower::service_fn(move |_: Request<()>| {
        counted.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok::<_, std::convert::Infallible>(Response::new(Full::new(
            Bytes::from(vec![b'x'; 20_000]),
        ))))
    });
    let service = HeldAnswers::new(inner, budget, None);
    let from = |last: u8| {
        let mut request = Request::new(());
        request
            .extensions_mut()
            .insert(ClientAddress(v4(last).unwrap()));
        request
    };
    let held = service.clone().oneshot(from(1)).await.unwrap();
    assert_eq!(budget.held_by(v4(1).unwrap()), (20_000, 1));
    let refused = service.clone().oneshot(from(1)).await.unwrap();
    assert_eq!(refused.status(), http::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()["retry-after"], "1");
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "the refused request did not run"
    );
    let other = service.clone().oneshot(from(2)).await.unwrap();
    assert_eq!(other.status(), http::StatusCode::OK);
    drop((held, other));
    assert_eq!(budget.held(), 0);
}

#[test]
fn a_full_server_budget_refuses_everyone() {
    let budget = AnswerBudget::new(1000, 0);
    budget.hold(v4(1), 600);
    budget.hold(None, 400);
    for anyone in [v4(1), v4(2), None] {
        assert_eq!(budget.admit(anyone), Err(Over::Server));
    }
    budget.release(None, 400);
    assert_eq!(budget.admit(v4(2)), Ok(()));
}

#[test]
fn past_half_the_server_budget_only_clients_under_an_even_share_are_served() {
    let budget = AnswerBudget::new(1000, 0);
    // Two clients hold 600 of 1000: the share of the half is 250 each.
    budget.hold(v4(1), 550);
    budget.hold(v4(2), 50);
    assert_eq!(
        budget.admit(v4(1)),
        Err(Over::Server),
        "holds more than its share"
    );
    assert_eq!(budget.admit(v4(2)), Ok(()), "holds less");
    assert_eq!(budget.admit(v4(3)), Ok(()), "holds nothing");
    assert_eq!(
        budget.admit(None),
        Err(Over::Server),
        "cannot be told apart"
    );
    // Under half, nobody's share is looked at.
    budget.release(v4(1), 150);
    assert_eq!(budget.admit(v4(1)), Ok(()));
}

/// On a direct connection no request names its client: the budget made for the connection
/// (`for_client`) counts them under its peer; a request that names its own is counted under
/// that one.
#[tokio::test]
async fn a_budget_for_a_connection_counts_its_requests_under_its_client() {
    use tower::ServiceExt;
    let budget: &'static AnswerBudget = Box::leak(Box::new(AnswerBudget::new(0, 10_000)));
    let inner = tower::service_fn(|_: Request<()>| {
        std::future::ready(Ok::<_, std::convert::Infallible>(Response::new(Full::new(
            Bytes::from(vec![b'x'; 20_000]),
        ))))
    });
    let service = HeldAnswers::new(inner, budget, None).for_client(v4(1));
    let held = service.clone().oneshot(Request::new(())).await.unwrap();
    assert_eq!(budget.held_by(v4(1).unwrap()), (20_000, 1));
    let refused = service.clone().oneshot(Request::new(())).await.unwrap();
    assert_eq!(refused.status(), http::StatusCode::SERVICE_UNAVAILABLE);
    let mut named = Request::new(());
    named.extensions_mut().insert(ClientAddress(v4(2).unwrap()));
    let other = service.clone().oneshot(named).await.unwrap();
    assert_eq!(other.status(), http::StatusCode::OK);
    // What the client holds, and how many clients hold anything.
    assert_eq!(budget.held_by(v4(2).unwrap()), (20_000, 2));
    assert_eq!(
        budget.held_by(v4(1).unwrap()),
        (20_000, 2),
        "not the peer's"
    );
    drop((held, other));
}
