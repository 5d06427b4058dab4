//! Reading a batch: the JSON document, checked whole before any sub-request runs (ids unique,
//! at most 20 requests, relative URLs, no nested batch, `dependsOn` naming known ids and
//! making no cycle).

use http::uri::PathAndQuery;
use http::{HeaderName, HeaderValue, Method};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use super::MAX_REQUESTS;
use crate::error::{ErrorKind, GraphError};

/// Most headers one request of a batch may name: hyper's bound on an HTTP/1 request's head.
const MOST_HEADERS: usize = 100;
/// Most bytes of header names and values one request of a batch may carry: hyper's bound on
/// an HTTP/2 request's header list (16 KiB).
const MOST_HEADER_BYTES: usize = 16 * 1024;

/// One sub-request, checked.
#[derive(Debug)]
pub(crate) struct Sub {
    pub(crate) id: String,
    pub(crate) method: Method,
    /// Relative to the batch's prefix, starting with `/`; spaces percent-encoded.
    pub(crate) url: PathAndQuery,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    /// The body exactly as the batch carried it, so the merge-patch layer's strict parser
    /// sees it (duplicate members, integers past 64 bits) instead of a re-serialization.
    pub(crate) body: Option<Box<RawValue>>,
    /// Indices of the requests this one waits for.
    pub(crate) depends_on: Vec<usize>,
}

/// The requests' bodies, untouched.
#[derive(Deserialize)]
struct RawBodies {
    requests: Vec<RawBody>,
}

#[derive(Deserialize)]
struct RawBody {
    body: Option<Box<RawValue>>,
}

/// Parses and checks a batch body.
///
/// # Errors
/// 400 naming what is wrong.
pub(crate) fn parse(bytes: &[u8]) -> Result<Vec<Sub>, GraphError> {
    let document: Value = serde_json::from_slice(bytes)
        .map_err(|error| bad(format!("The batch is not valid JSON: {error}")))?;
    let text = std::str::from_utf8(bytes)
        .map_err(|_| bad("The batch is not valid JSON: it is not UTF-8."))?;
    refuse_duplicate_members(text)?;
    let requests = document
        .get("requests")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("The batch must be an object with a \"requests\" array."))?;
    if requests.is_empty() {
        return Err(bad("The batch has no requests."));
    }
    if requests.len() > MAX_REQUESTS {
        return Err(bad(format!(
            "The batch has {} requests; at most {MAX_REQUESTS} are allowed.",
            requests.len()
        )));
    }
    let ids: Vec<&str> = requests
        .iter()
        .enumerate()
        .map(|(index, request)| {
            request
                .get("id")
                .and_then(Value::as_str)
                .filter(|id| !id.is_empty())
                .ok_or_else(|| bad(format!("Request {} of the batch has no id.", index + 1)))
        })
        .collect::<Result<_, _>>()?;
    for (index, id) in ids.iter().enumerate() {
        if ids[..index].contains(id) {
            return Err(bad(format!(
                "The id '{}' is used twice in the batch.",
                short(id)
            )));
        }
    }
    let raw: RawBodies = serde_json::from_slice(bytes)
        .map_err(|error| bad(format!("The batch is not valid JSON: {error}")))?;
    let mut subs = Vec::with_capacity(requests.len());
    for ((request, id), raw) in requests.iter().zip(&ids).zip(raw.requests) {
        subs.push(sub(request, id, &ids, raw.body)?);
    }
    check_acyclic(&subs)?;
    Ok(subs)
}

fn sub(
    request: &Value,
    id: &str,
    ids: &[&str],
    raw_body: Option<Box<RawValue>>,
) -> Result<Sub, GraphError> {
    let context = |what: &str| bad(format!("Request '{}' of the batch {what}", short(id)));
    let method = request
        .get("method")
        .and_then(Value::as_str)
        .and_then(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()).ok())
        .ok_or_else(|| context("has no valid method."))?;
    let url = request
        .get("url")
        .and_then(Value::as_str)
        .ok_or_else(|| context("has no url."))?;
    if url.contains("://") || url.starts_with("//") {
        return Err(context(
            "must have a URL relative to the API root (like /me/security).",
        ));
    }
    let url = if url.starts_with('/') {
        url.to_owned()
    } else {
        format!("/{url}")
    };
    let path = url
        .split('?')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
        .replace("%24", "$");
    if path.trim_end_matches('/').ends_with("/$batch") {
        return Err(context("is a batch itself; batches do not nest."));
    }
    let url: PathAndQuery = url
        .replace(' ', "%20")
        .parse()
        .map_err(|_| context("has a URL that is not valid."))?;
    let mut headers = Vec::new();
    if let Some(map) = request.get("headers") {
        let map = map
            .as_object()
            .ok_or_else(|| context("has headers that are not an object."))?;
        // The bounds a request's own head has at the front door; past them `http`'s header
        // map would panic (it holds at most 24,576 entries).
        if map.len() > MOST_HEADERS {
            return Err(context(&format!(
                "has {} headers; at most {MOST_HEADERS} are allowed.",
                map.len()
            )));
        }
        let mut bytes = 0;
        for (name, value) in map {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| context("has a header name that is not valid."))?;
            let value = value
                .as_str()
                .and_then(|v| HeaderValue::from_str(v).ok())
                .ok_or_else(|| context("has a header value that is not a valid string."))?;
            bytes += name.as_str().len() + value.len();
            if bytes > MOST_HEADER_BYTES {
                return Err(context(&format!(
                    "has headers of more than {MOST_HEADER_BYTES} bytes."
                )));
            }
            headers.push((name, value));
        }
    }
    let body = raw_body.filter(|raw| raw.get() != "null");
    if body.is_some() && !headers.iter().any(|(n, _)| n == http::header::CONTENT_TYPE) {
        return Err(context("has a body but no Content-Type header."));
    }
    let mut depends_on = Vec::new();
    if let Some(list) = request.get("dependsOn") {
        let list = list
            .as_array()
            .ok_or_else(|| context("has a dependsOn that is not an array."))?;
        for dependency in list {
            let name = dependency.as_str().unwrap_or_default();
            let index = ids.iter().position(|other| *other == name).ok_or_else(|| {
                context(&format!(
                    "depends on '{}', which is not in the batch.",
                    short(name)
                ))
            })?;
            depends_on.push(index);
        }
    }
    Ok(Sub {
        id: id.to_owned(),
        method,
        url,
        headers,
        body,
        depends_on,
    })
}

/// The members of one JSON object, in order, their values unparsed.
struct Members<'a>(Vec<(String, &'a RawValue)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Members<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Members<'de>, A::Error> {
                let mut members = Vec::new();
                while let Some(name) = map.next_key::<String>()? {
                    members.push((name, map.next_value::<&'de RawValue>()?));
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

impl<'a> Members<'a> {
    /// The members of `json` if it is an object; `None` leaves naming what is wrong with it
    /// to the checks that follow.
    fn of(json: &'a str) -> Option<Self> {
        serde_json::from_str(json).ok()
    }

    fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.0
            .iter()
            .find(|(named, _)| named == name)
            .map(|(_, value)| *value)
    }

    /// The first name given twice, ASCII case folded (a reader that folds case, as .NET's
    /// readers may, keeps one of two such names; every name of ours is ASCII), found with a
    /// set: linear, as a headers object may have thousands of members.
    fn named_twice(&self) -> Option<&str> {
        let mut seen = std::collections::HashSet::with_capacity(self.0.len());
        self.0
            .iter()
            .map(|(name, _)| name.as_str())
            .find(|name| !seen.insert(name.to_ascii_lowercase()))
    }
}

/// Refuses a member named twice, in any case, in the batch's own objects: the document, each
/// request and each request's headers. `serde_json` keeps the last of two, where another
/// reader of the same bytes (a proxy, an audit of the request) may keep the first, so that the
/// `If-Match` one of them saw is not the one that ran. The bodies are left to the strict patch
/// parser, which refuses a duplicate there as a sub-request's 400, as it does for a PATCH of
/// its own.
fn refuse_duplicate_members(text: &str) -> Result<(), GraphError> {
    let Some(document) = Members::of(text) else {
        return Ok(());
    };
    if let Some(name) = document.named_twice() {
        return Err(bad(format!(
            "The batch has the member '{}' twice.",
            short(name)
        )));
    }
    let Some(requests) = document
        .get("requests")
        .and_then(|requests| serde_json::from_str::<Vec<&RawValue>>(requests.get()).ok())
    else {
        return Ok(());
    };
    for (index, request) in requests.iter().enumerate() {
        let Some(request) = Members::of(request.get()) else {
            continue;
        };
        let place = index + 1;
        if let Some(name) = request.named_twice() {
            return Err(bad(format!(
                "Request {place} of the batch has the member '{}' twice.",
                short(name)
            )));
        }
        let headers = request
            .get("headers")
            .and_then(|headers| Members::of(headers.get()));
        if let Some(name) = headers.as_ref().and_then(|headers| headers.named_twice()) {
            return Err(bad(format!(
                "Request {place} of the batch names the header '{}' twice.",
                short(name)
            )));
        }
    }
    Ok(())
}

/// Kahn's algorithm: every request must be reachable in dependency order.
fn check_acyclic(subs: &[Sub]) -> Result<(), GraphError> {
    let mut done = vec![false; subs.len()];
    loop {
        let ready: Vec<usize> = (0..subs.len())
            .filter(|&i| !done[i] && subs[i].depends_on.iter().all(|&d| done[d]))
            .collect();
        if ready.is_empty() {
            break;
        }
        for index in ready {
            done[index] = true;
        }
    }
    match done.iter().position(|d| !d) {
        None => Ok(()),
        Some(index) => Err(bad(format!(
            "Request '{}' of the batch is part of a dependency cycle.",
            short(&subs[index].id)
        ))),
    }
}

fn short(text: &str) -> String {
    text.chars().take(64).collect()
}

#[cold]
fn bad(message: impl Into<std::borrow::Cow<'static, str>>) -> GraphError {
    GraphError::new(ErrorKind::BadRequest, message)
}

#[cfg(test)]
mod tests {
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
    fn a_good_batch_is_planned() {
        let subs = parse(
            br#"{"requests":[{"id":"a","method":"patch","url":"me/security","headers":{"content-type":"application/json"},"body":{}},{"id":"b","method":"GET","url":"/me/security","dependsOn":["a"]}]}"#,
        )
        .unwrap();
        assert_eq!(subs[0].method, Method::PATCH);
        assert_eq!(subs[0].url, "/me/security");
        assert_eq!(subs[1].depends_on, [0]);
    }
}
