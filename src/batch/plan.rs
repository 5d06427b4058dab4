//! Reading a batch: the JSON document, checked whole before any sub-request runs (ids unique,
//! at most 20 requests, relative URLs, no nested batch, `dependsOn` naming known ids and
//! making no cycle).

use http::uri::PathAndQuery;
use http::{HeaderName, HeaderValue, Method};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

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

/// One request of the batch as read: its members but the body, parsed; the body as the
/// batch carried it.
struct Request {
    members: Map<String, Value>,
    body: Option<Box<RawValue>>,
}

impl Request {
    /// Reads the request at `place` (from 1). A body is not parsed here: one JSON may write
    /// but this parser cannot hold (a number past `f64`, a lone surrogate) is its request's
    /// 400, given by the patch parser, not the whole batch's. A member named twice in the
    /// request or its headers is the batch's 400 (see [`refuse_named_twice`]). A request
    /// that is not an object has no members: the checks that follow name what it lacks.
    fn read(raw: &RawValue, place: usize) -> Result<Self, GraphError> {
        let whose = || format!("Request {place} of the batch");
        let Some(members) = Members::of(raw.get(), whose)? else {
            return Ok(Self {
                members: Map::new(),
                body: None,
            });
        };
        refuse_named_twice(&members, whose)?;
        let headers = match members.get("headers") {
            Some(headers) => Members::of(headers.get(), whose)?,
            None => None,
        };
        if let Some(name) = headers.as_ref().and_then(Members::named_twice) {
            return Err(bad(format!(
                "Request {place} of the batch names the header '{}' twice.",
                short(name)
            )));
        }
        let mut request = Self {
            members: Map::with_capacity(members.0.len()),
            body: None,
        };
        for (name, value) in members.0 {
            if name == "body" {
                request.body = Some(value.to_owned());
                continue;
            }
            let value = serde_json::from_str(value.get()).map_err(|error| {
                bad(format!(
                    "Request {place} of the batch has a member '{}' that cannot be read: {error}",
                    short(&name)
                ))
            })?;
            request.members.insert(name, value);
        }
        Ok(request)
    }
}

/// Parses and checks a batch body.
///
/// # Errors
/// 400 naming what is wrong.
pub(crate) fn parse(bytes: &[u8]) -> Result<Vec<Sub>, GraphError> {
    // The syntax of the whole; what is inside the bodies is their requests' to judge.
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes)
        .map_err(|error| bad(format!("The batch is not valid JSON: {error}")))?;
    let text = std::str::from_utf8(bytes)
        .map_err(|_| bad("The batch is not valid JSON: it is not UTF-8."))?;
    let not_a_batch = || bad("The batch must be an object with a \"requests\" array.");
    let whose = || "The batch".to_owned();
    let document = Members::of(text, whose)?.ok_or_else(not_a_batch)?;
    refuse_named_twice(&document, whose)?;
    let requests: Vec<&RawValue> = document
        .get("requests")
        .and_then(|requests| serde_json::from_str(requests.get()).ok())
        .ok_or_else(not_a_batch)?;
    if requests.is_empty() {
        return Err(bad("The batch has no requests."));
    }
    if requests.len() > MAX_REQUESTS {
        return Err(bad(format!(
            "The batch has {} requests; at most {MAX_REQUESTS} are allowed.",
            requests.len()
        )));
    }
    let requests = requests
        .iter()
        .enumerate()
        .map(|(index, raw)| Request::read(raw, index + 1))
        .collect::<Result<Vec<_>, _>>()?;
    let ids: Vec<&str> = requests
        .iter()
        .enumerate()
        .map(|(index, request)| {
            request
                .members
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
    let mut subs = Vec::with_capacity(requests.len());
    for (request, id) in requests.iter().zip(&ids) {
        subs.push(sub(request, id, &ids)?);
    }
    check_acyclic(&subs)?;
    Ok(subs)
}

fn sub(request: &Request, id: &str, ids: &[&str]) -> Result<Sub, GraphError> {
    let (body, request) = (&request.body, &request.members);
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
    let body = body.clone().filter(|raw| raw.get() != "null");
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
    /// The members of `json` if it is an object, `None` if it is another value (the checks
    /// that follow name what it lacks); 400 for an object with a name this parser cannot hold
    /// (a lone surrogate), naming `what` it is.
    fn of(json: &'a str, what: impl Fn() -> String) -> Result<Option<Self>, GraphError> {
        if !json.trim_start().starts_with('{') {
            return Ok(None);
        }
        serde_json::from_str(json).map(Some).map_err(|error| {
            bad(format!(
                "{} has a member name that cannot be read: {error}",
                what()
            ))
        })
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

/// Refuses a member named twice, in any case, in one of the batch's own objects (the
/// document, a request, a request's headers): `serde_json` keeps the last of two, where
/// another reader of the same bytes (a proxy, an audit of the request) may keep the first,
/// so that the `If-Match` one of them saw is not the one that ran. The bodies are left to
/// the strict patch parser, which refuses a duplicate there as a sub-request's 400, as it
/// does for a PATCH of its own. `whose` names the object ("The batch").
fn refuse_named_twice(object: &Members<'_>, whose: impl Fn() -> String) -> Result<(), GraphError> {
    match object.named_twice() {
        Some(name) => Err(bad(format!(
            "{} has the member '{}' twice.",
            whose(),
            short(name)
        ))),
        None => Ok(()),
    }
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
#[path = "plan_tests.rs"]
mod tests;
