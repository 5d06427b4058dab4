//! What the service makes of a request before any store is involved: [`Handed`] (where the
//! layers' decisions are found) and [`Operation`] (what is asked for).

use http::{Method, Request};

use super::SecurityUpdateService;
use super::conditional::{Conditions, Precondition};
use super::endpoint::Decided;
use super::write::Write;
use crate::auth::{Access, Principal};
use crate::content_type::{JsonContentType, check_json_content_type};
use crate::error::{ErrorKind, GraphError};
use crate::merge_patch::MergePatch;
use crate::odata::QueryOptions;
use crate::odata::representation::Representation;
use crate::refusal::declares_body;
use crate::store::{ObjectKey, SecurityStore};
use crate::timeout::WriteDeadline;

/// Where the service finds what the layers before it decided of a request.
pub(crate) enum Handed {
    /// In the request's extensions, where the layers of a stack composed by hand put it: the
    /// preflight's decision (taken only if it holds for this request), the content-type
    /// marker, the merge patch.
    InExtensions,
    /// Handed over by the stack's [`Endpoint`](crate::endpoint::Endpoint), which decided for
    /// this very request and checked its content type a moment before: nothing to box into
    /// the extensions and take out again.
    Direct {
        access: Access,
        key: ObjectKey,
        /// The principal the decision was made for.
        actor: Principal,
        /// The timeout's deadline, if one runs.
        deadline: Option<WriteDeadline>,
        patch: Option<MergePatch>,
    },
}

/// What a request asks for, once everything that needs no store has been checked.
pub(super) enum Operation {
    Read {
        key: ObjectKey,
        representation: Representation,
        /// `If-Match`, `If-None-Match`.
        conditions: (Precondition, Precondition),
        head: bool,
        /// The request's version when it declared a body, which a read leaves unread: the
        /// answer then closes an HTTP/1 connection (`crate::refusal`).
        unread: Option<http::Version>,
    },
    Write(Write),
}

impl<S: SecurityStore> SecurityUpdateService<S> {
    /// Routing, authentication, authorization, content type, patch presence, `If-Match`
    /// syntax and the patch-only schema rules: everything that needs no store.
    pub(super) fn prepare<B>(
        &self,
        request: &mut Request<B>,
        handed: Handed,
    ) -> Result<Operation, GraphError> {
        let config = &*self.shared.config;
        // The preflight's decision, if it holds for this request; else decided here.
        let (access, key, actor, handed_patch, deadline, content_checked) = match handed {
            Handed::Direct {
                access,
                key,
                actor,
                deadline,
                patch,
            } => (access, key, actor, patch, deadline, true),
            Handed::InExtensions => {
                let (access, key, actor, checked) = self.decided_in_extensions(request)?;
                let deadline = request.extensions().get::<WriteDeadline>().cloned();
                (access, key, actor, None, deadline, checked)
            }
        };
        let options = QueryOptions::parse(request.uri().query(), &config.schema)?;
        let representation = Representation::new(
            request,
            config.service_root.as_deref(),
            config.path_prefix.as_deref(),
            key.user_id(),
            options,
        );
        if access == Access::Read {
            let conditions = Conditions::parse(request.headers())?;
            return Ok(Operation::Read {
                key,
                representation,
                conditions: (conditions.if_match, conditions.if_none_match),
                head: request.method() == Method::HEAD,
                unread: declares_body(request.headers()).then_some(request.version()),
            });
        }
        if !content_checked {
            check_json_content_type(request.headers())?;
        }
        let mut patch = match handed_patch {
            Some(patch) => patch,
            None => patch_in_extensions(request)?,
        };
        patch.strip_annotations()?;
        config.schema.check_patch_alone(&patch)?;
        let conditions = Conditions::parse(request.headers())?;
        Ok(Operation::Write(Write {
            key,
            actor,
            patch,
            precondition: conditions.if_match,
            unless: conditions.if_none_match,
            minimal: conditions.minimal,
            deadline,
            representation,
        }))
    }

    /// The preflight's decision as a stack composed by hand leaves it in the extensions (if it
    /// holds for this request; else decided here), its principal, and whether the
    /// content-type layer ran. Out of line, and so is the helper below: the built
    /// stack's [`Endpoint`](crate::endpoint::Endpoint) hands all of it over directly, and
    /// code a PATCH there never runs is kept out of the lines it does run (the instruction
    /// cache; benches/README.md, twenty-second session).
    #[inline(never)]
    fn decided_in_extensions<B>(
        &self,
        request: &mut Request<B>,
    ) -> Result<(Access, ObjectKey, Principal, bool), GraphError> {
        let config = &self.shared.config;
        let decided = request
            .extensions_mut()
            .remove::<Decided>()
            .and_then(|decided| decided.for_request(config, request));
        let (access, key, actor) = match decided {
            Some(decided) => decided,
            None => config.authorize(request)?,
        };
        let checked = request.extensions().get::<JsonContentType>().is_some();
        Ok((access, key, actor, checked))
    }
}

/// The patch a [`MergePatchLayer`](crate::MergePatchLayer) left in the extensions; 400
/// without one.
#[inline(never)]
fn patch_in_extensions<B>(request: &mut Request<B>) -> Result<MergePatch, GraphError> {
    request
        .extensions_mut()
        .remove::<MergePatch>()
        .ok_or_else(|| {
            GraphError::new(
                ErrorKind::BadRequest,
                "The request body was not read as a merge patch (is MergePatchLayer mounted?).",
            )
        })
}
