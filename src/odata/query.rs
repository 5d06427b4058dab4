//! System query options. OData 4.01 §5.1 (URL Conventions) makes system query option names
//! case-insensitive and the `$` prefix optional for services that support it; Graph's beta
//! endpoint does both (`select=id` means `$select=id`). Names are percent-decoded first: the
//! SDKs send `%24select`.
//!
//! Supported here: `$select` and `$expand` (of `informationProtection`, the type's one
//! navigation property). Every other system query option is refused with a 400 that names it,
//! never silently ignored; a parameter without `$` that is not a system option is ignored, as
//! Graph ignores it.

use std::borrow::Cow;

use crate::error::{ErrorKind, GraphError};
use crate::schema::ResourceSchema;

/// Every OData 4.01 system query option name (without `$`, lowercase).
const SYSTEM_OPTIONS: &[&str] = &[
    "select",
    "expand",
    "filter",
    "orderby",
    "top",
    "skip",
    "count",
    "search",
    "format",
    "compute",
    "index",
    "skiptoken",
    "deltatoken",
    "apply",
    "levels",
    "schemaversion",
    "id",
];

/// The navigation property `$expand` may name.
pub(crate) const INFORMATION_PROTECTION: &str = "informationProtection";

/// What the query string asks of the representation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryOptions {
    /// `$select`: the properties to return, in the order given; `None` for all.
    pub select: Option<Vec<String>>,
    /// `$expand=informationProtection`.
    pub expand_information_protection: bool,
}

impl QueryOptions {
    /// Parses `query` (the part after `?`) against `schema`.
    ///
    /// # Errors
    /// 400 naming an unsupported or unknown system query option, a repeated one, or a
    /// `$select`ed property that no object under `schema` can have.
    pub fn parse(query: Option<&str>, schema: &ResourceSchema) -> Result<Self, GraphError> {
        let mut options = Self::default();
        let Some(query) = query else {
            return Ok(options);
        };
        let (mut seen_select, mut seen_expand) = (false, false);
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = decode(raw_name)?;
            let dollar = name.starts_with('$');
            let bare = name.trim_start_matches('$').to_ascii_lowercase();
            if !SYSTEM_OPTIONS.contains(&bare.as_str()) {
                if dollar {
                    return Err(bad(format!(
                        "The query option '{}' is not a system query option; remove it.",
                        shorten(&name)
                    )));
                }
                continue;
            }
            let value = decode(raw_value)?;
            match bare.as_str() {
                "select" if !std::mem::replace(&mut seen_select, true) => {
                    options.select = Some(select(&value, schema)?);
                }
                "expand" if !std::mem::replace(&mut seen_expand, true) => {
                    // OData 4.01 URL conventions: expand = expandItem *( COMMA expandItem ).
                    if value.split(',').all(|item| item.trim().is_empty()) {
                        return Err(bad(
                            "$expand names no navigation property; use $expand=informationProtection.",
                        ));
                    }
                    for item in value.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                        if item != INFORMATION_PROTECTION {
                            return Err(bad(format!(
                                "'{}' cannot be expanded: the only navigation property of \
                                 microsoft.graph.security.security is informationProtection.",
                                shorten(item)
                            )));
                        }
                        options.expand_information_protection = true;
                    }
                }
                "select" | "expand" => {
                    return Err(bad(format!(
                        "The query option '${bare}' is given more than once."
                    )));
                }
                other => {
                    return Err(bad(format!(
                        "The query option '${other}' is not supported on this resource; remove it."
                    )));
                }
            }
        }
        Ok(options)
    }
}

fn select(value: &str, schema: &ResourceSchema) -> Result<Vec<String>, GraphError> {
    let mut names = Vec::new();
    for item in value.split(',').map(str::trim) {
        if item.is_empty() {
            return Err(bad("$select names an empty property."));
        }
        if item == INFORMATION_PROTECTION {
            return Err(bad(
                "informationProtection is a navigation property: use $expand=informationProtection.",
            ));
        }
        if !schema.allows(item) {
            return Err(bad(format!(
                "Could not find a property named '{}' on type microsoft.graph.security.security.",
                shorten(item)
            )));
        }
        if !names.iter().any(|n| n == item) {
            names.push(item.to_owned());
        }
    }
    Ok(names)
}

/// Percent-decodes a query component (`+` stays `+`, as OData URLs have no form encoding).
fn decode(text: &str) -> Result<Cow<'_, str>, GraphError> {
    if !text.contains('%') {
        return Ok(Cow::Borrowed(text));
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| bad("The query string has a malformed percent-escape."))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| bad("The query string is not UTF-8 once decoded."))
}

/// At most 64 characters of client text in a message.
fn shorten(text: &str) -> String {
    text.chars().take(64).collect()
}

#[cold]
fn bad(message: impl Into<Cow<'static, str>>) -> GraphError {
    GraphError::new(ErrorKind::BadRequest, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(query: &str) -> Result<QueryOptions, String> {
        QueryOptions::parse(Some(query), &ResourceSchema::graph())
            .map_err(|e| e.message().to_owned())
    }

    #[test]
    fn select_and_expand_with_or_without_dollar_in_any_case() {
        for query in [
            "$select=id",
            "select=id",
            "%24select=id",
            "$SELECT=id",
            "$Select=%69d",
        ] {
            assert_eq!(
                parse(query).unwrap().select,
                Some(vec!["id".to_owned()]),
                "{query}"
            );
        }
        let both = parse("$select=id&$expand=informationProtection").unwrap();
        assert!(both.expand_information_protection);
        assert_eq!(parse("expand=informationProtection").unwrap().select, None);
    }

    #[test]
    fn unknown_or_unsupported_options_are_named() {
        for (query, needle) in [
            ("$select=bogusProperty", "'bogusProperty'"),
            ("$select=informationProtection", "use $expand"),
            ("$expand=owner", "'owner' cannot be expanded"),
            ("$expand=", "names no navigation property"),
            ("%24expand=%20,", "names no navigation property"),
            ("$filter=id eq 'x'", "'$filter' is not supported"),
            ("top=1", "'$top' is not supported"),
            ("$foo=1", "'$foo' is not a system query option"),
            ("$select=id&select=id", "more than once"),
            ("$select=%zz", "malformed percent-escape"),
        ] {
            let error = parse(query).unwrap_err();
            assert!(error.contains(needle), "{query}: {error}");
        }
    }

    #[test]
    fn plain_parameters_are_ignored() {
        assert_eq!(parse("foo=1&bar").unwrap(), QueryOptions::default());
    }
}
