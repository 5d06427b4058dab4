//! Tests of reading a batch: what is refused, and why.

use super::*;

fn error(json: &str) -> String {
    parse(json.as_bytes()).unwrap_err().message().to_owned()
}

#[test]
fn malformed_batches_are_named() {
    assert!(error("nope").contains("not valid JSON"));
    assert!(error(r#"{"requests":[]}"#).contains("no requests"));
    assert!(error(r#"{"requests":[{"method":"GET","url":"/me/security"}]}"#).contains("no id"));
    assert!(error(r#"{"requests":[{"id":"1","url":"/me/security"}]}"#).contains("method"));
    let two = r#"{"requests":[{"id":"1","method":"GET","url":"/a"},{"id":"1","method":"GET","url":"/b"}]}"#;
    assert!(error(two).contains("used twice"));
    let absolute = r#"{"requests":[{"id":"1","method":"GET","url":"https://evil/me"}]}"#;
    assert!(error(absolute).contains("relative"));
    let nested = r#"{"requests":[{"id":"1","method":"POST","url":"/$batch"}]}"#;
    assert!(error(nested).contains("do not nest"));
    let unknown = r#"{"requests":[{"id":"1","method":"GET","url":"/a","dependsOn":["9"]}]}"#;
    assert!(error(unknown).contains("not in the batch"));
    let cycle = r#"{"requests":[{"id":"1","method":"GET","url":"/a","dependsOn":["2"]},{"id":"2","method":"GET","url":"/b","dependsOn":["1"]}]}"#;
    assert!(error(cycle).contains("cycle"));
    let no_type = r#"{"requests":[{"id":"1","method":"PATCH","url":"/a","body":{}}]}"#;
    assert!(error(no_type).contains("Content-Type"));
    let many: Vec<String> = (0..21)
        .map(|i| format!(r#"{{"id":"{i}","method":"GET","url":"/me/security"}}"#))
        .collect();
    assert!(error(&format!(r#"{{"requests":[{}]}}"#, many.join(","))).contains("at most 20"));
}

#[test]
fn a_member_named_twice_in_the_batchs_own_objects_is_refused() {
    let get = r#"{"id":"1","method":"GET","url":"/me/security"}"#;
    let cases = [
        (format!(r#"{{"requests":[{get}],"requests":[{get}]}}"#), "member 'requests' twice"),
        (
            r#"{"requests":[{"id":"1","method":"GET","method":"PATCH","url":"/a"}]}"#.into(),
            "Request 1 of the batch has the member 'method' twice",
        ),
        (
            // An escape spells the same name.
            format!(r#"{{"requests":[{get},{{"id":"2","url":"/a","method":"GET","\u0075rl":"/b"}}]}}"#),
            "Request 2 of the batch has the member 'url' twice",
        ),
        (
            r#"{"requests":[{"id":"1","method":"GET","url":"/a","headers":{"If-Match":"\"1\"","if-match":"*"}}]}"#.into(),
            "names the header 'if-match' twice",
        ),
        (
            // A reader folding case keeps one of the two.
            r#"{"requests":[{"id":"1","method":"PATCH","Method":"GET","url":"/a"}]}"#.into(),
            "Request 1 of the batch has the member 'Method' twice",
        ),
    ];
    for (json, needle) in cases {
        assert!(error(&json).contains(needle), "{json}: {}", error(&json));
    }
    // In a body, a duplicate is the patch parser's to refuse, as that sub-request's 400.
    let body = r#"{"requests":[{"id":"1","method":"PATCH","url":"/a","headers":{"content-type":"application/json"},"body":{"a":1,"a":2}}]}"#;
    assert_eq!(parse(body.as_bytes()).unwrap().len(), 1);
}

#[test]
fn what_this_parser_cannot_hold_outside_a_body_is_named() {
    let cases = [
        (
            r#"{"requests":[{"id":"1","method":"GET","url":"/a","\ud800":1}]}"#,
            "Request 1 of the batch has a member name that cannot be read",
        ),
        (
            r#"{"\udc00":1,"requests":[{"id":"1","method":"GET","url":"/a"}]}"#,
            "The batch has a member name that cannot be read",
        ),
        (
            r#"{"requests":[{"id":"1","method":"GET","url":"/a","headers":{"\ud800":"x"}}]}"#,
            "Request 1 of the batch has a member name that cannot be read",
        ),
        (
            r#"{"requests":[{"id":"1","method":"GET","url":"/a","x":1e400}]}"#,
            "Request 1 of the batch has a member 'x' that cannot be read",
        ),
    ];
    for (json, needle) in cases {
        assert!(error(json).contains(needle), "{json}: {}", error(json));
    }
    // In a body it is the sub-request's to refuse.
    let body = r#"{"requests":[{"id":"1","method":"PATCH","url":"/a","headers":{"content-type":"application/json"},"body":{"\ud800":1e400}}]}"#;
    assert_eq!(parse(body.as_bytes()).unwrap().len(), 1);
}

#[test]
fn a_good_batch_is_planned() {
    let subs = parse(
        br#"{"requests":[{"id":"a","method":"patch","url":"me/security","headers":{"content-type":"application/json"},"body":{}},{"id":"b","method":"GET","url":"/me/security","dependsOn":["a"]}]}"#,
    )
    .unwrap();
    assert_eq!(subs[0].method, Method::PATCH);
    assert_eq!(subs[0].url, "/me/security");
    assert_eq!(subs[1].depends_on, [0]);
}
