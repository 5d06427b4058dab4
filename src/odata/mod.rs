//! OData, as Graph's beta endpoint speaks it: system query options on the resource
//! ([`QueryOptions`]), the `@odata.context` of every representation, and control information
//! and instance annotations in request bodies.
//!
//! | request | answer |
//! |---|---|
//! | `GET .../security?$select=id` (or `select=id`, `%24select=id`, `$SELECT=id`) | 200, only `id` (and `@odata.context`, `@odata.type`) |
//! | `GET ...?$select=bogus` | 400 naming `bogus` |
//! | `GET ...?$expand=informationProtection` | 200 with the expanded `informationProtection` entity |
//! | `GET ...?$expand=other`, `?$filter=...`, `?$top=1`, `?$foo=1` | 400 naming the option |
//! | `GET ...?foo=1` (no `$`, not an option) | ignored, as Graph does |
//! | `PATCH` with `@odata.etag`, `@contoso.note`, `id@odata.type` | accepted, never stored |
//! | `PATCH` with a malformed annotation name (`@`, `@x`, `a@`) | 400 naming it |

pub(crate) mod annotations;
pub(crate) mod query;
pub(crate) mod representation;

pub use query::QueryOptions;
