//! What a successful request answers: the object as Graph renders it (its content type,
//! `OData-Version`, `ETag`), or 204 for `Prefer: return=minimal`; and the object a user has
//! before their first save.

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;
use serde_json::{Map, Value};

use crate::error::{ErrorKind, GraphError};
use crate::odata::representation::Representation;
use crate::request_id::RequestIds;
use crate::schema::ODATA_TYPE;
use crate::store::{ObjectKey, Snapshot};

/// The content type Graph answers objects with.
const ODATA_JSON: &str = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8";
const ODATA_VERSION: HeaderName = HeaderName::from_static("odata-version");
const PREFERENCE_APPLIED: HeaderName = HeaderName::from_static("preference-applied");
/// Namespace of the deterministic (v5) object ids: the same user gets the same id everywhere.
const ID_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x5e6c_0d1e_7a4b_4c2e_9f0a_3b1d_2c4e_6f80);

/// A successful answer.
pub(crate) struct Reply {
    pub(crate) snapshot: Snapshot,
    pub(crate) minimal: bool,
    pub(crate) representation: Representation,
    /// A read whose `If-None-Match` matched: 304 with the `ETag`, no body (RFC 9110 §15.4.5).
    pub(crate) not_modified: bool,
    /// A `HEAD`: the headers of the `GET`, with its `Content-Length`, and no body.
    pub(crate) head: bool,
}

impl Reply {
    /// An object, in full or as `Prefer` asks.
    pub(crate) fn of(snapshot: Snapshot, minimal: bool, representation: Representation) -> Self {
        Self {
            snapshot,
            minimal,
            representation,
            not_modified: false,
            head: false,
        }
    }

    /// The answer, closing an HTTP/1 connection when the request's body was left `unread`
    /// (its version; see `crate::refusal`). The ids go last, where a
    /// [`RequestIdLayer`](crate::RequestIdLayer) outside puts them when it stamps them.
    pub(crate) fn into_response(
        self,
        ids: &RequestIds,
        unread: Option<http::Version>,
    ) -> Response<Full<Bytes>> {
        let mut response = if self.not_modified {
            let mut response = Response::new(Full::new(Bytes::new()));
            *response.status_mut() = StatusCode::NOT_MODIFIED;
            response
        } else if self.head {
            let length = self.representation.render(&self.snapshot).len();
            let mut response = Response::new(Full::new(Bytes::new()));
            let headers = response.headers_mut();
            headers.append(header::CONTENT_TYPE, HeaderValue::from_static(ODATA_JSON));
            headers.append(header::CONTENT_LENGTH, HeaderValue::from(length));
            response
        } else if self.minimal {
            let mut response = Response::new(Full::new(Bytes::new()));
            *response.status_mut() = StatusCode::NO_CONTENT;
            response.headers_mut().append(
                PREFERENCE_APPLIED,
                HeaderValue::from_static("return=minimal"),
            );
            response
        } else {
            let mut response = Response::new(Full::new(self.representation.render(&self.snapshot)));
            response
                .headers_mut()
                .append(header::CONTENT_TYPE, HeaderValue::from_static(ODATA_JSON));
            response
        };
        let headers = response.headers_mut();
        // Appended: the response is new, with no value to replace (see
        // `RequestIds::stamp_unless_layered`).
        headers.append(ODATA_VERSION, HeaderValue::from_static("4.0"));
        headers.append(header::ETAG, self.snapshot.etag());
        if let Some(version) = unread {
            crate::refusal::mark_last(&mut response, version);
        }
        ids.stamp_unless_layered(response.headers_mut());
        response
    }
}

/// A user's object before its first save: version 0, its type and its stable id.
pub(crate) fn default_snapshot(key: &ObjectKey) -> Result<Snapshot, GraphError> {
    let name = format!("{}/{}", key.tenant_id(), key.user_id());
    let id = uuid::Uuid::new_v5(&ID_NAMESPACE, name.as_bytes());
    let mut document = Map::new();
    document.insert("@odata.type".to_owned(), Value::from(ODATA_TYPE));
    document.insert("id".to_owned(), Value::from(id.to_string()));
    Snapshot::new(0, document).map_err(|_| serialization_failed())
}

pub(crate) fn serialization_failed() -> GraphError {
    GraphError::new(ErrorKind::Internal, "the object could not be serialized")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The service's own answers carry the request's ids, unless a `RequestIdLayer` outside
    /// put them there (it stamps the response itself).
    #[tokio::test]
    async fn answers_carry_the_ids_unless_the_layer_outside_stamps_them() {
        use tower::{Layer, ServiceExt};
        let reply = || {
            let request = http::Request::get("/me/security").body(()).unwrap();
            let representation = Representation::new(&request, None, None, "u", Default::default());
            Reply::of(
                default_snapshot(&ObjectKey::new("t", "u")).unwrap(),
                false,
                representation,
            )
        };
        let alone = RequestIds::generate(Some(HeaderValue::from_static("client-1")));
        let response = reply().into_response(&alone, None);
        assert_eq!(response.headers()["request-id"], alone.request_id());
        assert_eq!(response.headers()["client-request-id"], "client-1");

        let layered = crate::RequestIdLayer::new().layer(tower::service_fn(
            move |request: http::Request<()>| async move {
                let ids = request.extensions().get::<RequestIds>().cloned().unwrap();
                let mut response = reply().into_response(&ids, None);
                // Not stamped here: the layer does.
                assert!(response.headers().get("request-id").is_none());
                response.extensions_mut().insert(ids);
                Ok::<_, std::convert::Infallible>(response)
            },
        ));
        let response = layered.oneshot(http::Request::new(())).await.unwrap();
        let seen = response.extensions().get::<RequestIds>().unwrap();
        assert_eq!(response.headers()["request-id"], seen.request_id());
        assert_eq!(response.headers()["client-request-id"], seen.request_id());
    }

    #[test]
    fn default_ids_are_stable_and_distinct() {
        let a = default_snapshot(&ObjectKey::new("T", "A")).unwrap();
        let again = default_snapshot(&ObjectKey::new("t", "a")).unwrap();
        let b = default_snapshot(&ObjectKey::new("t", "b")).unwrap();
        assert_eq!(a.document()["id"], again.document()["id"]);
        assert_ne!(a.document()["id"], b.document()["id"]);
        assert_eq!(a.version(), 0);
    }
}
