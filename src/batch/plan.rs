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

/// Parses and checks a batch body.
///
/// # Errors
/// 400 naming what is wrong.
/// The requests' bodies, untouched.
#[derive(Deserialize)]
struct RawBodies {
    requests: Vec<RawBody>,
}

#[derive(Deserialize)]
struct RawBody {
    body: Option<Box<RawValue>>,
}

pub(crate) fn parse(bytes: &[u8]) -> Result<Vec<Sub>, GraphError> {
    let document: Value = serde_json::from_slice(bytes)
        .map_err(|error| bad(format!("The batch is not valid JSON: {error}")))?;
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
        for (name, value) in map {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| context("has a header name that is not valid."))?;
            let value = value
                .as_str()
                .and_then(|v| HeaderValue::from_str(v).ok())
                .ok_or_else(|| context("has a header value that is not a valid string."))?;
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
